//! A far registry, simulated: a TCP proxy that delays every byte by half a round trip each
//! way (and a new connection by a whole one, for the handshake), without limiting bandwidth.
//! Requests on a kept-alive connection each pay one round trip, as they would across a WAN.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

pub struct LatencyProxy {
    port: u16,
    stop: Arc<AtomicBool>,
    connections: Arc<AtomicU64>,
}

impl LatencyProxy {
    /// In front of `upstream` (`127.0.0.1:PORT`), with round trip `rtt`.
    pub fn start(upstream: &str, rtt: Duration) -> LatencyProxy {
        LatencyProxy::start_with(upstream, rtt, false)
    }

    /// As [`LatencyProxy::start`]; with `swallow_tls`, a connection that opens with a TLS
    /// ClientHello is held unanswered (as some HTTP-only proxies and middleboxes do), instead
    /// of being passed on for the plain-HTTP registry to refuse.
    pub fn start_with(upstream: &str, rtt: Duration, swallow_tls: bool) -> LatencyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the latency proxy");
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicU64::new(0));
        let upstream = upstream.to_string();
        {
            let (stop, connections) = (stop.clone(), connections.clone());
            thread::spawn(move || {
                for client in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    connections.fetch_add(1, Ordering::Relaxed);
                    let upstream = upstream.clone();
                    thread::spawn(move || {
                        let mut first = [0u8; 1];
                        if swallow_tls
                            && client.peek(&mut first).is_ok_and(|n| n == 1)
                            && first[0] == 0x16
                        {
                            thread::sleep(Duration::from_secs(120));
                            return;
                        }
                        // The handshake's round trip.
                        thread::sleep(rtt);
                        let Ok(server) = TcpStream::connect(&upstream) else {
                            return;
                        };
                        let _ = client.set_nodelay(true);
                        let _ = server.set_nodelay(true);
                        relay(
                            client.try_clone().unwrap(),
                            server.try_clone().unwrap(),
                            rtt / 2,
                        );
                        relay(server, client, rtt / 2);
                    });
                }
            });
        }
        LatencyProxy {
            port,
            stop,
            connections,
        }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }
}

impl Drop for LatencyProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Copies `from` to `to`, each chunk `delay` after it was read (order kept).
fn relay(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    let (sender, receiver) = mpsc::channel::<(Instant, Vec<u8>)>();
    thread::spawn(move || {
        let mut buffer = vec![0u8; 256 * 1024];
        loop {
            match from.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sender.send((Instant::now(), buffer[..n].to_vec())).is_err() {
                        break;
                    }
                }
            }
        }
        // `sender` drops here: the writer ends after the last chunk.
    });
    thread::spawn(move || {
        for (read_at, bytes) in receiver {
            let due = read_at + delay;
            let now = Instant::now();
            if due > now {
                thread::sleep(due - now);
            }
            if to.write_all(&bytes).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}
