//! The response serialiser on arbitrary statuses and headers: never a panic, and nothing it
//! accepts can split the head (R1).
#![no_main]

use _native::core::response_head::build_head;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\u{1}');
    let status = parts.next().unwrap_or("");
    let fields: Vec<&str> = parts.collect();
    let headers: Vec<(&str, &str)> = fields
        .chunks(2)
        .map(|c| (c[0], c.get(1).copied().unwrap_or("")))
        .collect();
    if let Ok(head) = build_head(status, headers.iter().copied(), false) {
        let bytes = head.bytes;
        assert!(bytes.ends_with(b"\r\n\r\n"));
        let body = &bytes[..bytes.len() - 4];
        let lines = body.split(|&b| b == b'\n').count();
        assert!(lines <= 1 + headers.len());
        for line in body.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            assert!(!line.contains(&b'\r') && !line.contains(&0));
        }
    }
});
