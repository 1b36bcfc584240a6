//! Load generator for `commlog serve`: starts the server on a fresh store in a temporary
//! directory, then drives it over keep-alive connections with `POST /v1/messages` calls (a send
//! of the reference workload's shape) and prints calls/s and the p50/p99 latency.
//!
//! ```text
//! cargo run --release -p commlog-server --example load -- \
//!     [--transport unix|tcp] [--connections 64] [--sync always|interval] [--seconds 5]
//! ```
//!
//! The client shares the machine (and its cores) with the server.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use commlog::SyncPolicy;
use commlog_server::{ServeOptions, serve};

struct Args {
    transport: String,
    connections: usize,
    sync: String,
    seconds: u64,
}

fn args() -> Args {
    let mut args = Args {
        transport: "unix".into(),
        connections: 64,
        sync: "always".into(),
        seconds: 5,
    };
    let mut given = std::env::args().skip(1);
    while let Some(flag) = given.next() {
        let value = given.next().expect("every flag takes a value");
        match flag.as_str() {
            "--transport" => args.transport = value,
            "--connections" => args.connections = value.parse().expect("a number"),
            "--sync" => args.sync = value,
            "--seconds" => args.seconds = value.parse().expect("a number"),
            _ => panic!("unknown flag {flag}"),
        }
    }
    args
}

/// One keep-alive connection: a request out, a response back (status and body read whole).
trait Connection: Read + Write + Send {}
impl Connection for UnixStream {}
impl Connection for TcpStream {}

fn call(reader: &mut BufReader<Box<dyn Connection>>, body: &str) -> u16 {
    let request = format!(
        "POST /v1/messages HTTP/1.1\r\nHost: commlog\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    reader
        .get_mut()
        .write_all(request.as_bytes())
        .expect("send");
    let mut line = String::new();
    reader.read_line(&mut line).expect("status line");
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    let mut length = 0;
    loop {
        line.clear();
        reader.read_line(&mut line).expect("a header");
        if line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().expect("a length");
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).expect("the body");
    status
}

fn main() {
    let args = args();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = dir.path().join("store");
    let mut options = ServeOptions::new(&store);
    options.sync = match args.sync.as_str() {
        "always" => SyncPolicy::Always,
        "interval" => SyncPolicy::Interval(Duration::from_millis(100)),
        other => panic!("--sync {other}: always or interval"),
    };
    let tcp_port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        probe.local_addr().expect("its address").port()
    };
    if args.transport == "tcp" {
        options.listen = Some(format!("127.0.0.1:{tcp_port}").parse().expect("an address"));
    }
    let socket: PathBuf = options.socket_path();
    std::thread::spawn(move || serve(options).expect("the server runs"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "the server did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    let connect = || -> Box<dyn Connection> {
        if args.transport == "tcp" {
            let stream = TcpStream::connect(("127.0.0.1", tcp_port)).expect("connect");
            stream.set_nodelay(true).expect("nodelay");
            Box::new(stream)
        } else {
            Box::new(UnixStream::connect(&socket).expect("connect"))
        }
    };
    let until = Instant::now() + Duration::from_secs(args.seconds);
    let workers: Vec<_> = (0..args.connections)
        .map(|worker| {
            let mut reader = BufReader::new(connect());
            std::thread::spawn(move || {
                let mut latencies = Vec::new();
                let mut n = 0u64;
                while Instant::now() < until {
                    n += 1;
                    let user = (worker as u64) * 1_000_000 + n % 50_000 + 1;
                    let body = format!(
                        r#"{{"user_id":{user},"channel":"sms","message_type":"low_balance","cost_micros":7500}}"#
                    );
                    let start = Instant::now();
                    assert_eq!(call(&mut reader, &body), 201);
                    latencies.push(start.elapsed());
                }
                latencies
            })
        })
        .collect();
    let started = Instant::now();
    let mut latencies: Vec<Duration> = workers
        .into_iter()
        .flat_map(|worker| worker.join().expect("a worker"))
        .collect();
    let elapsed = started.elapsed().max(Duration::from_secs(args.seconds));
    latencies.sort();
    let percentile = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    println!(
        "transport {} sync {} connections {}: {} calls in {:.1} s = {:.0} calls/s; p50 {:?}, p99 {:?}",
        args.transport,
        args.sync,
        args.connections,
        latencies.len(),
        elapsed.as_secs_f64(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        percentile(0.5),
        percentile(0.99),
    );
    std::process::exit(0);
}
