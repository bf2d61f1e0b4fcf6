//! `haul completions SHELL`: the shell completion script, generated from the clap definitions.

use std::io::Write;

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;

pub fn run(shell: Shell) -> anyhow::Result<()> {
    // Written in one piece so a closed pipe is an error here (exit 0), not a panic in clap_complete.
    std::io::stdout().lock().write_all(&script(shell))?;
    Ok(())
}

fn script(shell: Shell) -> Vec<u8> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "haul", &mut script);
    script
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bash_script_knows_every_subcommand() {
        let bash = String::from_utf8(script(Shell::Bash)).unwrap();
        assert!(bash.contains("complete -F _haul"), "{bash}");
        // The word lists offered after `haul` and after `haul cache`.
        let offers = |words: &[&str]| {
            bash.lines()
                .filter_map(|line| line.trim().strip_prefix("opts=\""))
                .any(|opts| {
                    let offered: Vec<&str> = opts.trim_end_matches('"').split(' ').collect();
                    words.iter().all(|word| offered.contains(word))
                })
        };
        let subcommands = ["export", "pull", "inspect", "cache", "completions"];
        assert!(offers(&subcommands), "{bash}");
        assert!(offers(&["ls", "du", "verify", "prune", "rm"]), "{bash}");
        for subcommand in subcommands {
            assert!(bash.contains(&format!("haul,{subcommand})")), "{bash}");
        }
        // Options of a subcommand are offered too.
        assert!(bash.contains("--platform"), "{bash}");
    }

    #[test]
    fn every_shell_gets_a_script() {
        for shell in [
            Shell::Bash,
            Shell::Zsh,
            Shell::Fish,
            Shell::PowerShell,
            Shell::Elvish,
        ] {
            let script = String::from_utf8(script(shell)).unwrap();
            assert!(script.contains("inspect"), "{shell}: {script}");
        }
    }
}
