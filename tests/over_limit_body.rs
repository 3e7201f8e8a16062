//! A body over `--max-request-bytes` is refused with a 413 before it is
//! read; a client that goes on sending it must still see that answer.

mod common;

use common::Server;

/// Reads one HTTP/1.1 answer (head and a `content-length` body) from `stream`.
fn read_answer(stream: &mut std::net::TcpStream) -> String {
    use std::io::Read;
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).expect("an answer");
        assert_eq!(
            n,
            1,
            "the connection closed after {:?}",
            String::from_utf8_lossy(&got)
        );
        got.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&got).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&body)
    )
}

/// A client that goes on sending a body over the limit after the 413 came
/// back has it read and thrown away: it sees the answer rather than a
/// broken pipe, and its connection serves the next request.
#[test]
fn an_over_limit_body_is_read_after_the_413() {
    use std::io::Write;
    let s = Server::demo(&["--max-request-bytes", "100000"]);
    let mut stream = std::net::TcpStream::connect(s.base.trim_start_matches("http://")).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    stream
        .set_write_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let size = 1_000_000;
    write!(
        stream,
        "POST /v2/models/fraud/infer HTTP/1.1\r\nhost: podium\r\ncontent-type: application/json\r\ncontent-length: {size}\r\n\r\n"
    )
    .unwrap();
    let answer = read_answer(&mut stream);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("the limit is 100000 bytes"), "{answer}");
    for _ in 0..10 {
        stream.write_all(&vec![b' '; size / 10]).unwrap();
    }
    write!(
        stream,
        "GET /v2/health/live HTTP/1.1\r\nhost: podium\r\n\r\n"
    )
    .unwrap();
    let next = read_answer(&mut stream);
    assert!(next.starts_with("HTTP/1.1 200"), "{next}");
}
