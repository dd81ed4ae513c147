//! The accept loop's connection limit.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn answer_within(stream: &mut TcpStream, wait: Duration) -> Option<String> {
    let mut buf = [0u8; 1024];
    match tokio::time::timeout(wait, stream.read(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        _ => None,
    }
}

#[tokio::test]
async fn past_the_connection_limit_new_connections_wait_for_a_free_slot() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
    let limits = portcullis_http::Limits {
        header_timeout: Duration::from_secs(30),
        max_header_bytes: 16 * 1024,
        drain_timeout: Duration::from_secs(1),
        max_connections: 2,
    };
    tokio::spawn(portcullis_http::serve(listener, router, limits, std::future::pending(), |s| async move { Some(s) }));
    let request = b"GET / HTTP/1.1\r\nhost: a\r\n\r\n";

    // Two connections that send nothing hold both slots.
    let mut first = TcpStream::connect(addr).await.unwrap();
    let _second = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A third is connected by the kernel but not served while they are open.
    let mut third = TcpStream::connect(addr).await.unwrap();
    third.write_all(request).await.unwrap();
    assert_eq!(answer_within(&mut third, Duration::from_millis(500)).await, None, "served past the limit");
    // One closes: the third is served.
    first.shutdown().await.unwrap();
    drop(first);
    let answer = answer_within(&mut third, Duration::from_secs(5)).await.expect("served once a slot is free");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[test]
fn the_open_files_limit_is_raised_to_what_is_needed_or_reported() {
    assert_eq!(portcullis_http::make_room_for_open_files(64), None);
    let (soft, hard) = rlimit::Resource::NOFILE.get().unwrap();
    let within = hard.min(8192).max(soft);
    assert_eq!(portcullis_http::make_room_for_open_files(within), None);
    assert!(rlimit::Resource::NOFILE.get().unwrap().0 >= within, "raised");
    let warning = portcullis_http::make_room_for_open_files(u64::MAX).expect("beyond any hard limit");
    assert!(warning.contains("open-files limit"), "{warning}");
}
