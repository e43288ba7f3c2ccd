//! `keyway-load`: a closed-loop HTTP/1.1 load generator over a unix socket or TCP (wrk cannot speak unix
//! sockets), one thread like `wrk -t1`. Keep-alive connections each send GET requests for paths in rotation and
//! record every latency; prints `requests= rps= p50_ms= p99_ms= errors=`.
//!
//! `keyway-load (--unix PATH | --tcp ADDR) [--connections 64] [--seconds 10] [--path /v1/bench-%02d]
//!  [--rotate 50] [--header 'Name: value']`

use std::time::{Duration, Instant};

use http_body_util::{BodyExt as _, Empty};
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

struct Args {
    unix: Option<String>,
    tcp: Option<String>,
    connections: usize,
    seconds: u64,
    path: String,
    rotate: usize,
    headers: Vec<(String, String)>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        unix: None,
        tcp: None,
        connections: 64,
        seconds: 10,
        path: "/v1/bench-%02d".into(),
        rotate: 50,
        headers: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--unix" => args.unix = Some(value()?),
            "--tcp" => args.tcp = Some(value()?),
            "--connections" => args.connections = value()?.parse().map_err(|e| format!("{e}"))?,
            "--seconds" => args.seconds = value()?.parse().map_err(|e| format!("{e}"))?,
            "--path" => args.path = value()?,
            "--rotate" => args.rotate = value()?.parse().map_err(|e| format!("{e}"))?,
            "--header" => {
                let h = value()?;
                let (k, v) = h.split_once(':').ok_or("--header takes 'Name: value'")?;
                args.headers
                    .push((k.trim().to_owned(), v.trim().to_owned()));
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if args.unix.is_none() == args.tcp.is_none() {
        return Err("give exactly one of --unix PATH or --tcp ADDR".into());
    }
    Ok(args)
}

fn path_for(template: &str, i: usize) -> String {
    template.replace("%02d", &format!("{i:02}"))
}

async fn connection(args: std::sync::Arc<Args>, offset: usize, until: Instant) -> (Vec<u32>, u64) {
    if let Some(p) = &args.unix {
        let s = tokio::net::UnixStream::connect(p)
            .await
            .expect("connect unix");
        drive(TokioIo::new(s), &args, offset, until).await
    } else {
        let s = tokio::net::TcpStream::connect(args.tcp.as_deref().unwrap_or_default())
            .await
            .expect("connect tcp");
        s.set_nodelay(true).ok();
        drive(TokioIo::new(s), &args, offset, until).await
    }
}

async fn drive<S>(io: S, args: &Args, offset: usize, until: Instant) -> (Vec<u32>, u64)
where
    S: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let mut latencies = Vec::with_capacity(1 << 16);
    let mut errors = 0;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut n = offset;
    while Instant::now() < until {
        n += 1;
        let mut request =
            Request::get(path_for(&args.path, n % args.rotate + 1)).header("host", "bench");
        for (k, v) in &args.headers {
            request = request.header(k, v);
        }
        let request = request.body(Empty::<Bytes>::new()).expect("request");
        let started = Instant::now();
        let Ok(response) = sender.send_request(request).await else {
            errors += 1;
            break;
        };
        let ok = response.status().is_success();
        let _ = response.into_body().collect().await;
        if !ok {
            errors += 1;
        }
        latencies.push(u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX));
    }
    (latencies, errors)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => std::sync::Arc::new(a),
        Err(e) => {
            eprintln!("keyway-load: {e}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let started = Instant::now();
        let until = started + Duration::from_secs(args.seconds);
        let tasks: Vec<_> = (0..args.connections)
            .map(|c| tokio::spawn(connection(args.clone(), c * 7, until)))
            .collect();
        let mut all = Vec::new();
        let mut errors = 0;
        for t in tasks {
            let (l, e) = t.await.expect("task");
            all.extend(l);
            errors += e;
        }
        let elapsed = started.elapsed().as_secs_f64();
        all.sort_unstable();
        let pct = |p: f64| {
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss
            )]
            let i = ((all.len() as f64) * p) as usize;
            f64::from(
                all.get(i.min(all.len().saturating_sub(1)))
                    .copied()
                    .unwrap_or(0),
            ) / 1000.0
        };
        #[allow(clippy::cast_precision_loss)]
        let rps = all.len() as f64 / elapsed;
        println!(
            "requests={} rps={rps:.0} p50_ms={:.3} p99_ms={:.3} errors={errors}",
            all.len(),
            pct(0.5),
            pct(0.99)
        );
    });
}
