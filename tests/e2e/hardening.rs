//! Slow and greedy clients (SPEC §8), with raw sockets: headers that never finish, a body that
//! stalls, a keep-alive connection left idle, and more connections than the cap. Each limit is
//! set low for the test; the assertions are about what happens (the connection closes, the
//! request is refused), with generous bounds so a slow machine cannot fail them.

use crate::harness::{spawn_with, Options, TestApp};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Far longer than any limit set below: a read still waiting after this has not been closed.
const PATIENCE: Duration = Duration::from_secs(20);

async fn app_with(env: &[(&'static str, &str)]) -> TestApp {
    spawn_with(Options {
        env: env.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        ..Options::default()
    })
    .await
}

/// Reads until the server closes the connection; `None` if it has not within [`PATIENCE`].
async fn read_to_close(stream: &mut TcpStream) -> Option<String> {
    let mut all = Vec::new();
    let read = tokio::time::timeout(PATIENCE, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|()| String::from_utf8_lossy(&all).into_owned())
}

/// Reads one response (headers and a `Content-Length` body) off a keep-alive connection.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut buf))
            .await
            .expect("a response")
            .unwrap();
        assert!(n > 0, "closed before a whole response");
        all.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&all).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if all.len() >= end + 4 + length {
                return text;
            }
        }
    }
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: wxlogin\r\n\r\n";

#[tokio::test]
async fn headers_that_do_not_arrive_in_time_close_the_connection() {
    let app = app_with(&[("WXLOGIN_HEADER_TIMEOUT", "1s")]).await;

    // Half a request header, then nothing.
    let mut half = TcpStream::connect(app.addr).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: wxl")
        .await
        .unwrap();
    let answer = read_to_close(&mut half)
        .await
        .expect("the server closes a connection whose headers stall");
    assert!(
        !answer.contains("200 OK"),
        "half a header is never answered: {answer}"
    );

    // A connection that never sends a byte is closed as well.
    let mut silent = TcpStream::connect(app.addr).await.unwrap();
    assert!(read_to_close(&mut silent).await.is_some());
    app.shutdown().await;
}

#[tokio::test]
async fn a_stalled_body_is_answered_408_and_never_processed() {
    let app = app_with(&[("WXLOGIN_REQUEST_TIMEOUT", "1s")]).await;
    let code = app.code("slow-uploader").await;
    let body = format!(r#"{{"code":"{code}"}}"#);
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /login HTTP/1.1\r\nHost: wxlogin\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // All of the body but its last byte.
    stream
        .write_all(&body.as_bytes()[..body.len() - 1])
        .await
        .unwrap();
    let answer = read_to_close(&mut stream)
        .await
        .expect("the server closes a connection whose body stalls");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""error":"request_timeout""#), "{answer}");

    // The stalled login did nothing: its code still logs in.
    let (status, reply) = app.login(&code).await;
    assert_eq!(status, 200, "{reply}");
    app.shutdown().await;
}

#[tokio::test]
async fn an_idle_keepalive_connection_is_closed_after_its_own_timeout() {
    let app = app_with(&[
        ("WXLOGIN_HEADER_TIMEOUT", "1s"),
        ("WXLOGIN_KEEPALIVE_TIMEOUT", "4s"),
    ])
    .await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream.write_all(HEALTHZ).await.unwrap();
    assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));

    // Idle for longer than the header timeout: the keep-alive timeout, not that one, applies.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stream.write_all(HEALTHZ).await.unwrap();
    assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));

    // And then left idle: closed.
    let rest = read_to_close(&mut stream)
        .await
        .expect("an idle keep-alive connection is closed");
    assert_eq!(rest, "", "nothing more is sent before the close");
    app.shutdown().await;
}

#[tokio::test]
async fn connections_above_the_cap_wait_for_a_free_one() {
    let app = app_with(&[("WXLOGIN_MAX_CONNECTIONS", "2")]).await;
    let mut first = TcpStream::connect(app.addr).await.unwrap();
    let mut second = TcpStream::connect(app.addr).await.unwrap();
    for stream in [&mut first, &mut second] {
        stream.write_all(HEALTHZ).await.unwrap();
        assert!(read_response(stream).await.starts_with("HTTP/1.1 200"));
    }

    // A third connection is not served while both are open…
    let mut third = TcpStream::connect(app.addr).await.unwrap();
    third.write_all(HEALTHZ).await.unwrap();
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_secs(1), third.read(&mut buf)).await;
    assert!(early.is_err(), "a connection above the cap is not served");

    // …and is, once one of them closes.
    drop(first);
    assert!(read_response(&mut third).await.starts_with("HTTP/1.1 200"));
    drop(second);
    app.shutdown().await;
}
