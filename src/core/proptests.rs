//! Bounded property tests of the parser, run by `cargo test`: random and mutated packets never
//! panic, and the result never depends on how the bytes were segmented (F2, X4).
//!
//! A small xorshift generator keeps them deterministic and free of extra dependencies; the
//! coverage-guided fuzzing of the same entry point is longer and runs apart.

use crate::core::framing::tests::packet;
use crate::core::vars::{parse_head, Limits, Progress};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

const KEYS: &[&[u8]] = &[
    b"REQUEST_METHOD",
    b"PATH_INFO",
    b"QUERY_STRING",
    b"CONTENT_LENGTH",
    b"CONTENT_TYPE",
    b"REQUEST_URI",
    b"HTTP_HOST",
    b"HTTP_COOKIE",
    b"HTTP_ACCEPT",
    b"REMOTE_ADDR",
    b"SCRIPT_NAME",
    b"UWSGI_SCHEME",
    b"HTTPS",
    b"X_CUSTOM",
    b"wsgi.input",
    b"HTTP_TRANSFER_ENCODING",
];

fn random_packet(rng: &mut Rng) -> Vec<u8> {
    let n = rng.below(12);
    let mut owned: Vec<(Vec<u8>, Vec<u8>)> = vec![(b"REQUEST_METHOD".to_vec(), b"GET".to_vec())];
    for _ in 0..n {
        let key = KEYS[rng.below(KEYS.len())].to_vec();
        let value = match rng.below(4) {
            0 => rng.below(100_000).to_string().into_bytes(),
            1 => {
                let n = rng.below(8);
                rng.bytes(n)
            }
            _ => b"/some/value".to_vec(),
        };
        owned.push((key, value));
    }
    let pairs: Vec<(&[u8], &[u8])> = owned
        .iter()
        .map(|(k, v)| (k.as_slice(), v.as_slice()))
        .collect();
    let mut p = packet(if rng.below(10) == 0 { 30 } else { 0 }, &pairs);
    let body = rng.below(20);
    p.extend(rng.bytes(body));
    p
}

fn mutate(rng: &mut Rng, mut p: Vec<u8>) -> Vec<u8> {
    for _ in 0..rng.below(4) {
        if p.is_empty() {
            break;
        }
        let i = rng.below(p.len());
        match rng.below(3) {
            0 => p[i] = rng.next() as u8,
            1 => {
                p.remove(i);
            }
            _ => p.insert(i, rng.next() as u8),
        }
    }
    p
}

/// What parsing the whole buffer says, in a comparable form.
fn outcome(buf: &[u8], limits: &Limits) -> Result<(usize, u64, usize), u16> {
    match parse_head(buf, limits) {
        Ok(Progress::Done(h)) => Ok((h.header.head_size(), h.content_length, h.vars.len())),
        Ok(Progress::NeedMore(n)) => Ok((n, u64::MAX, 0)),
        Err(e) => Err(e.status()),
    }
}

#[test]
fn x4_random_and_mutated_packets_never_panic_and_ignore_segmentation() {
    let limits = Limits::GUNICORN;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..20_000 {
        let p = random_packet(&mut rng);
        let p = if rng.below(2) == 0 {
            mutate(&mut rng, p)
        } else {
            p
        };
        let whole = outcome(&p, &limits);
        // Feeding any prefix gives either "need more" (asking for more than the prefix), or
        // the same verdict as the whole buffer once the head is complete (F2).
        let cut = rng.below(p.len() + 1);
        let part = &p[..cut];
        match parse_head(part, &limits) {
            Ok(Progress::NeedMore(n)) => assert!(n > part.len(), "{p:?} at {cut}"),
            _ => assert_eq!(outcome(part, &limits), whole, "{p:?} at {cut}"),
        }
    }
}

#[test]
fn x4_random_bytes_never_panic() {
    let limits = Limits::default();
    let mut rng = Rng(42);
    for _ in 0..20_000 {
        let n = rng.below(300);
        let buf = rng.bytes(n);
        let _ = parse_head(&buf, &limits);
    }
}

fn random_text(rng: &mut Rng) -> String {
    const PIECES: &[&str] = &[
        "a", "Z", "-", " ", "\t", "\r", "\n", "\0", ":", "é", "☺", "\x7f", "x-y", "200 OK",
    ];
    (0..rng.below(6))
        .map(|_| PIECES[rng.below(PIECES.len())])
        .collect()
}

#[test]
fn r1_no_random_status_or_header_ever_breaks_the_head() {
    let mut rng = Rng(7);
    for _ in 0..20_000 {
        let status = if rng.below(2) == 0 {
            format!("200 {}", random_text(&mut rng))
        } else {
            random_text(&mut rng)
        };
        let headers: Vec<(String, String)> = (0..rng.below(4))
            .map(|_| (random_text(&mut rng), random_text(&mut rng)))
            .collect();
        let Ok(head) = crate::core::response_head::build_head(
            &status,
            headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
            false,
        ) else {
            continue;
        };
        let bytes = head.bytes;
        assert!(bytes.ends_with(b"\r\n\r\n"));
        let body = &bytes[..bytes.len() - 4];
        for line in body.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            assert!(!line.contains(&b'\r') && !line.contains(&0), "{bytes:?}");
        }
        let lines = body.split(|&b| b == b'\n').count();
        assert!(
            lines <= 1 + headers.len(),
            "{status:?} {headers:?} -> {bytes:?}"
        );
    }
}
