//! The carrier integration against a local fake server: the plugin's own
//! code builds the request and reads the answer; a socket stands in for
//! the host's `http` interface.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;

use {{crate}}::{Call, Transport, book};

/// HTTP/1.1 over a plain socket to `127.0.0.1`.
struct Socket;

impl Transport for Socket {
    fn send(&self, call: &Call) -> Result<(u16, Vec<u8>), String> {
        let rest = call.url.strip_prefix("http://").ok_or("http only")?;
        let (authority, path) = rest.split_once('/').ok_or("no path")?;
        let mut s = TcpStream::connect(authority).map_err(|e| e.to_string())?;
        let mut head = format!(
            "{} /{path} HTTP/1.1\r\nhost: {authority}\r\nconnection: close\r\ncontent-length: {}\r\n",
            call.method,
            call.body.len()
        );
        for (n, v) in &call.headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
        s.write_all(&call.body).map_err(|e| e.to_string())?;
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&answer);
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or("no status")?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.as_bytes().to_vec())
            .unwrap_or_default();
        Ok((status, body))
    }
}

/// A fake carrier: answers one request with `status` and `body`, and
/// returns what it was sent (the request line, the headers and the body).
fn carrier(status: u16, body: &'static str) -> (String, thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut seen = String::new();
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
            seen.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let mut content = vec![0; length];
        reader.read_exact(&mut content).unwrap();
        seen.push_str(&String::from_utf8_lossy(&content));
        let mut out = stream;
        write!(
            out,
            "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        seen
    });
    (url, server)
}

const ORDER: &str = r#"{"id": "1001", "lines": [{"sku": "A"}, {"sku": "B"}], "shipping_address": {"city": "Riyadh"}}"#;

#[test]
fn a_shipment_is_booked_and_its_tracking_number_read() {
    let (url, server) = carrier(201, r#"{"tracking_number": "TRK-42"}"#);
    assert_eq!(
        book(&Socket, &url, "secret", ORDER),
        Ok("TRK-42".to_owned())
    );
    let sent = server.join().unwrap();
    assert!(sent.starts_with("POST /v1/shipments HTTP/1.1"), "{sent}");
    assert!(sent.contains("authorization: Bearer secret"), "{sent}");
    assert!(sent.contains(r#""parcels":2"#), "{sent}");
    assert!(sent.contains(r#""reference":"1001""#), "{sent}");
}

#[test]
fn a_refusal_from_the_carrier_is_an_error_that_says_what_it_answered() {
    let (url, server) = carrier(401, r#"{"error": "bad token"}"#);
    let err = book(&Socket, &url, "wrong", ORDER).unwrap_err();
    assert!(
        err.contains("answered 401") && err.contains("bad token"),
        "{err}"
    );
    server.join().unwrap();
}

#[test]
fn an_answer_without_a_tracking_number_is_an_error() {
    let (url, server) = carrier(200, "{}");
    assert!(
        book(&Socket, &url, "t", ORDER)
            .unwrap_err()
            .contains("tracking_number")
    );
    server.join().unwrap();
}
