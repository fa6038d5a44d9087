//! `freshet-kafka-mock`: librdkafka's mock Kafka cluster as a process of its own.
//!
//! Prints `bootstrap <host:port,…>` on its first line of output, then serves until its
//! standard input closes or says `quit`. Commands, one per line on stdin (each answered
//! with `ok` or `error …`):
//!
//! ```text
//! topic <name> <partitions>     create a topic
//! down <broker id>              take a broker down (ids start at 1)
//! up <broker id>                bring it back
//! quit
//! ```
//! With `--proxy-port P` it also listens on 127.0.0.1:P and forwards connections to the first
//! broker, so clients can bootstrap from a fixed address (brokers then advertise their own).

use std::io::{BufRead, Write};
use std::net::{TcpListener, TcpStream};

use rdkafka::mocking::MockCluster;

fn main() {
    let mut brokers = 1;
    let mut topics: Vec<(String, i32)> = Vec::new();
    let mut proxy_port: Option<u16> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--brokers" => brokers = args.next().and_then(|v| v.parse().ok()).unwrap_or(1),
            "--topic" => {
                let v = args.next().unwrap_or_default();
                let (name, parts) = v.split_once(':').unwrap_or((v.as_str(), "1"));
                topics.push((name.to_owned(), parts.parse().unwrap_or(1)));
            }
            "--proxy-port" => proxy_port = args.next().and_then(|v| v.parse().ok()),
            other => {
                eprintln!("usage: freshet-kafka-mock [--brokers N] [--topic NAME:PARTITIONS]… [--proxy-port P]\nunknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    let cluster = match MockCluster::new(brokers) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot start the mock cluster: {e}");
            std::process::exit(1);
        }
    };
    for (name, parts) in &topics {
        if let Err(e) = cluster.create_topic(name, *parts, 1) {
            eprintln!("cannot create topic {name}: {e}");
            std::process::exit(1);
        }
    }
    let bootstrap = cluster.bootstrap_servers();
    if let Some(port) = proxy_port {
        let target = bootstrap.split(',').next().unwrap_or_default().to_owned();
        match TcpListener::bind(("127.0.0.1", port)) {
            Ok(l) => {
                std::thread::spawn(move || proxy(l, target));
            }
            Err(e) => {
                eprintln!("cannot listen on 127.0.0.1:{port}: {e}");
                std::process::exit(1);
            }
        }
    }
    let mut out = std::io::stdout();
    let _ = writeln!(out, "bootstrap {bootstrap}");
    let _ = out.flush();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let words: Vec<&str> = line.split_whitespace().collect();
        let r = match words.as_slice() {
            ["quit"] => break,
            ["topic", name, parts] => parts
                .parse()
                .map_err(|_| "bad partition count".to_owned())
                .and_then(|p| cluster.create_topic(name, p, 1).map_err(|e| e.to_string())),
            ["down", id] => id
                .parse()
                .map_err(|_| "bad broker id".to_owned())
                .and_then(|id| cluster.broker_down(id).map_err(|e| e.to_string())),
            ["up", id] => id
                .parse()
                .map_err(|_| "bad broker id".to_owned())
                .and_then(|id| cluster.broker_up(id).map_err(|e| e.to_string())),
            [] => continue,
            _ => Err(format!("unknown command: {line}")),
        };
        let _ = match r {
            Ok(()) => writeln!(out, "ok"),
            Err(e) => writeln!(out, "error {e}"),
        };
        let _ = out.flush();
    }
}

/// Forwards each connection on `l` to `target`, byte for byte.
fn proxy(l: TcpListener, target: String) {
    for conn in l.incoming() {
        let Ok(client) = conn else { continue };
        let Ok(server) = TcpStream::connect(&target) else {
            continue;
        };
        let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
            continue;
        };
        std::thread::spawn(move || pipe(client, server));
        std::thread::spawn(move || pipe(s2, c2));
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(std::net::Shutdown::Both);
}
