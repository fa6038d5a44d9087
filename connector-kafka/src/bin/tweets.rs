//! `freshet-tweets`: produces realistic Twitter-v1.1-shaped JSON tweets into a Kafka topic,
//! at a chosen rate or as fast as possible.
//!
//! ```text
//! freshet-tweets [--bootstrap 127.0.0.1:9092] [--topic tweets] [--rate 200] [--count 0] [--seed 1]
//! ```
//! `--rate 0` produces as fast as the broker takes them; `--count 0` runs until stopped.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use freshet_connector_kafka::tweets::{tweet, DEMO_BOOTSTRAP};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

fn main() {
    let mut bootstrap = DEMO_BOOTSTRAP.to_owned();
    let mut topic = "tweets".to_owned();
    let mut rate: u64 = 200;
    let mut count: u64 = 0;
    let mut seed: u64 = 1;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next();
        match (a.as_str(), v) {
            ("--bootstrap", Some(v)) => bootstrap = v,
            ("--topic", Some(v)) => topic = v,
            ("--rate", Some(v)) => rate = v.parse().unwrap_or(rate),
            ("--count", Some(v)) => count = v.parse().unwrap_or(count),
            ("--seed", Some(v)) => seed = v.parse().unwrap_or(seed),
            _ => {
                eprintln!("usage: freshet-tweets [--bootstrap HOST:PORT] [--topic NAME] [--rate PER_SEC] [--count N] [--seed N]");
                std::process::exit(2);
            }
        }
    }
    let producer: ThreadedProducer<DefaultProducerContext> = match ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "5")
        .set("compression.type", "none")
        .set("queue.buffering.max.messages", "200000")
        .create()
    {
        Ok(p) => p,
        Err(e) => {
            eprintln!("cannot create a producer for {bootstrap}: {e}");
            std::process::exit(1);
        }
    };
    let start = Instant::now();
    let mut n: u64 = 0;
    while count == 0 || n < count {
        if rate > 0 {
            // Keep to the rate on average: sleep until tweet n is due.
            let due = start + Duration::from_secs_f64(n as f64 / rate as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let payload = tweet(seed, n, now_ms);
        let key = n.to_string();
        let mut record = BaseRecord::to(&topic).payload(&payload).key(&key);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => {
                    eprintln!("produce failed: {e}");
                    std::process::exit(1);
                }
            }
        }
        n += 1;
        if n.is_multiple_of(100_000) {
            eprintln!("{n} tweets produced");
        }
    }
    let _ = producer.flush(Duration::from_secs(60));
    eprintln!(
        "{n} tweets produced in {:.1} s",
        start.elapsed().as_secs_f64()
    );
}
