//! A writer killed with SIGKILL at a random moment loses no acknowledged event: under
//! `SyncPolicy::Always`, every call that returned is in the log when the store is reopened.
//!
//! The test runs itself as the writer: with `COMMLOG_KILL_CHILD` set it opens the store named
//! there, tracks messages on four threads and prints each acknowledged message id; the parent
//! kills it mid-stream, reopens the store and looks for every printed id.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use commlog::{Channel, Options, Store, SyncPolicy};

const CHILD_ENV: &str = "COMMLOG_KILL_CHILD";
const THREADS: u64 = 4;

fn run_child(dir: &str) {
    let store = Arc::new(
        Store::open_with(
            dir,
            Options {
                sync: SyncPolicy::Always,
                ..Options::default()
            },
        )
        .unwrap(),
    );
    let threads: Vec<_> = (0..THREADS)
        .map(|thread| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let t0 = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
                for n in 0u64.. {
                    let sent_at = t0 + chrono::Duration::seconds(n as i64);
                    let message = store
                        .track_message_sent_at(
                            thread + 1,
                            Channel::Email,
                            "weekly_checkin",
                            0.001,
                            sent_at,
                        )
                        .unwrap();
                    store
                        .track_message_delivered(
                            message.id,
                            Some(sent_at + chrono::Duration::seconds(1)),
                        )
                        .unwrap();
                    // Both calls returned: both are acknowledged.
                    println!("ack {}", message.id);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
}

/// The next whole `ack <id>` line (a line the kill cut short is not one), if any.
fn next_acknowledged(output: &mut impl BufRead) -> Option<u64> {
    let mut line = String::new();
    loop {
        line.clear();
        if output.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if let Some(id) = line
            .strip_suffix('\n')
            .and_then(|line| line.strip_prefix("ack "))
        {
            return Some(id.parse().expect("a whole line holds a whole id"));
        }
    }
}

#[test]
fn a_writer_killed_mid_stream_loses_no_acknowledged_event() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        run_child(&dir);
        return;
    }
    for round in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "a_writer_killed_mid_stream_loses_no_acknowledged_event",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut acknowledged = Vec::new();
        let mut output = BufReader::new(child.stdout.take().unwrap());
        let wanted = 200 + round * 150;
        while acknowledged.len() < wanted {
            let id = next_acknowledged(&mut output).expect("the writer acknowledges calls");
            acknowledged.push(id);
        }
        child.kill().unwrap(); // SIGKILL: no close, no final sync
        child.wait().unwrap();
        // Whatever whole lines the writer printed before it died are acknowledged too.
        while let Some(id) = next_acknowledged(&mut output) {
            acknowledged.push(id);
        }

        let store = Store::open(dir.path()).unwrap();
        for id in &acknowledged {
            let message = store
                .get_message(*id)
                .unwrap_or_else(|error| panic!("acknowledged message {id} lost: {error}"));
            assert!(
                message.delivered_at.is_some(),
                "acknowledged delivery of {id} lost"
            );
        }
        // Ids stay dense, and the reopened store takes new calls.
        let next = store
            .track_message_sent(1, Channel::Sms, "low_balance", 0.05)
            .unwrap();
        for id in 1..next.id.0 {
            store.get_message(id).unwrap();
        }
        store.close().unwrap();
    }
}
