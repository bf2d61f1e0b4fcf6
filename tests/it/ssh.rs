//! `haul export --to ssh://…`: the tar streams through the system's ssh into `docker load`
//! on the other side, here an sshd the test starts on loopback (the "remote" engine is this
//! machine's classic one).

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::harness::*;

/// An sshd on a free loopback port accepting one generated key for root; killed on drop.
struct Sshd {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Sshd {
    fn start() -> Sshd {
        require_tool("/usr/sbin/sshd");
        let dir = tempfile::tempdir().unwrap();
        let keygen = |name: &str| {
            let status = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(dir.path().join(name))
                .status()
                .unwrap();
            assert!(status.success());
        };
        keygen("host_key");
        keygen("client_key");
        std::fs::copy(
            dir.path().join("client_key.pub"),
            dir.path().join("authorized_keys"),
        )
        .unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\n\
             PidFile {d}/sshd.pid\nStrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n",
            d = dir.path().display()
        );
        std::fs::write(dir.path().join("sshd_config"), config).unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(dir.path().join("sshd_config"))
            .stderr(std::fs::File::create(dir.path().join("sshd.log")).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sshd did not start: {}",
                std::fs::read_to_string(dir.path().join("sshd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Sshd { child, port, dir }
    }

    /// The ssh command haul should use (key, no host-key prompts).
    fn ssh_command(&self) -> String {
        ssh_command(&self.dir.path().join("client_key"))
    }
}

fn ssh_command(key: &Path) -> String {
    format!(
        "ssh -i {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR",
        key.display()
    )
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn export_to_ssh_streams_into_a_remote_docker_load() {
    let sshd = Sshd::start();
    let registry = Registry::start();
    let repository = unique("test/ssh");
    let image = Image::runnable(
        "over ssh",
        vec![Layer::text("etc/s", "s\n", Compression::Gzip)],
        Compression::Gzip,
        false,
    );
    let pushed = registry.push(&repository, "v1", &image);
    let haul = Haul::new();
    let engine = Engine::Classic;
    engine.remove(&pushed.reference);

    let target = format!("ssh://root@127.0.0.1:{}", sshd.port);
    let run = haul
        .run_with(&["export", &pushed.reference, "--to", &target], |c| {
            c.env("HAUL_SSH_COMMAND", sshd.ssh_command());
        })
        .success();
    // The remote engine was asked what it holds, through the same ssh.
    assert!(!run.stderr.contains("cannot tell"), "{}", run.stderr);
    assert!(
        haul.workdir_files().is_empty(),
        "--to writes no local file: {:?}",
        haul.workdir_files()
    );
    assert_eq!(engine.image_id(&pushed.reference), pushed.config_digest);
    assert_eq!(engine.run(&pushed.reference, &[]).trim(), "over ssh");
    engine.remove(&pushed.reference);

    // No sshd there: ssh fails, and haul says which command did.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    haul.run_with(
        &[
            "export",
            &pushed.reference,
            "--to",
            &format!("ssh://root@127.0.0.1:{closed}"),
        ],
        |c| {
            c.env("HAUL_SSH_COMMAND", sshd.ssh_command());
        },
    )
    .failure(&["failed", "docker load"]);
    haul.run(&["export", &pushed.reference, "--to", "ftp://host"])
        .failure(&["only ssh://"]);
}
