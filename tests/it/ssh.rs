//! `haul export --to ssh://…`: the tar streams through the system's ssh into `docker load`
//! on the other side, here an sshd the test starts on loopback (the "remote" engine is this
//! machine's classic one). A patch delta streams into `haul load -` there instead, which
//! rebuilds it from that engine's own layers.

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

#[test]
fn a_patch_delta_is_rebuilt_where_the_engine_is() {
    use crate::patch::{Rebuilt, assert_absent, rebuilt_base};
    let sshd = Sshd::start();
    let Rebuilt { v1, v2, _registry } = rebuilt_base("test/ssh-patch", true, false);
    let haul = Haul::new();
    let engine = Engine::Classic;
    let _cleanup = engine.cleanup(&[&v1.reference, &v2.reference]);
    let v1_tar = haul.export(&[&v1.reference], "v1.tar");
    engine.load(&v1_tar);
    let patch_to = |target: &str, remote_haul: &str| {
        haul.run_with(
            &[
                "export",
                &v2.reference,
                "--since",
                "v1.tar",
                "--patch",
                "--to",
                target,
            ],
            |c| {
                c.env("HAUL_SSH_COMMAND", sshd.ssh_command());
                c.env("HAUL_REMOTE_COMMAND", remote_haul);
            },
        )
    };
    let target = format!("ssh://root@127.0.0.1:{}", sshd.port);

    // No haul on that host: said so, and nothing is loaded.
    patch_to(&target, "/nonexistent/haul").failure(&[
        "haul is not there",
        "HAUL_REMOTE_COMMAND",
        "without --patch",
    ]);
    assert_absent(engine, &v2.reference);

    // With it: the patch crosses, the haul there rebuilds it from the engine's v1 and loads
    // the very image (its ID is the config's digest).
    let run = patch_to(&target, env!("CARGO_BIN_EXE_haul")).success();
    assert!(run.stderr.contains("travels as a patch"), "{}", run.stderr);
    assert!(run.stderr.contains("rebuilt layer"), "{}", run.stderr);
    assert!(
        haul.workdir_files().iter().all(|f| f == "v1.tar"),
        "--to writes no local file: {:?}",
        haul.workdir_files()
    );
    assert_eq!(engine.image_id(&v2.reference), v2.config_digest);
    assert_eq!(engine.run(&v2.reference, &[]).trim(), "app v2");
    engine.remove(&v2.reference);

    // --load: rebuilt here, from the local engine's copy.
    let run = haul
        .run(&[
            "export",
            &v2.reference,
            "--since",
            "v1.tar",
            "--patch",
            "--load",
        ])
        .success();
    assert!(run.stderr.contains("rebuilt layer"), "{}", run.stderr);
    assert_eq!(engine.image_id(&v2.reference), v2.config_digest);
    engine.remove(&v2.reference);

    // `haul load -`: the delta on standard input.
    haul.run(&[
        "export",
        &v2.reference,
        "--since",
        "v1.tar",
        "--patch",
        "-o",
        "v2-patch.tar",
    ])
    .success();
    let delta = std::fs::read(haul.workdir.path().join("v2-patch.tar")).unwrap();
    let run = haul.run_stdin_bytes(&["load", "-"], &delta).success();
    assert!(run.stderr.contains("rebuilt layer"), "{}", run.stderr);
    assert_eq!(engine.image_id(&v2.reference), v2.config_digest);
}
