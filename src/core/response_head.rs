//! Validation and serialisation of the response head (R1–R4).
//!
//! The worker writes what this module produces: `HTTP/1.1 <status>`, the application's headers
//! minus hop-by-hop ones, a blank line. No `Server`, `Date` or `Connection` is added (nginx adds
//! its own), and the framing is never chunked: the body ends at `Content-Length` or at close.

use crate::core::errors::ResponseError;

/// A serialised, validated response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// The bytes to put on the wire before the body.
    pub bytes: Vec<u8>,
    /// The status code.
    pub status: u16,
    /// The `Content-Length` the application declared, when it is kept.
    pub content_length: Option<u64>,
    /// HEAD, 1xx, 204 and 304 responses carry no body bytes (R4).
    pub no_body: bool,
}

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
];

/// Hop-by-hop headers are stripped from the application's response (R2).
pub fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// RFC 9110 field-vchar, SP and HTAB, within latin-1.
fn is_field_char(c: char) -> bool {
    c == '\t' || (' '..='~').contains(&c) || ('\u{80}'..='\u{ff}').contains(&c)
}

fn push_latin1(out: &mut Vec<u8>, s: &str) {
    if s.is_ascii() {
        out.extend_from_slice(s.as_bytes());
    } else {
        // Callers have checked every char is at most U+00FF.
        out.extend(
            s.chars()
                .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?')),
        );
    }
}

/// Parses and checks a PEP 3333 status string: three digits, a space, a reason (R1).
pub fn parse_status(status: &str) -> Result<u16, ResponseError> {
    let bad = || ResponseError::Status(status.to_owned());
    let bytes = status.as_bytes();
    let (code, rest) = (
        bytes.get(..3).ok_or_else(bad)?,
        bytes.get(3..).ok_or_else(bad)?,
    );
    if !code.iter().all(u8::is_ascii_digit) || rest.first() != Some(&b' ') {
        return Err(bad());
    }
    let reason = status.get(4..).ok_or_else(bad)?;
    if !reason.chars().all(is_field_char) {
        return Err(bad());
    }
    let code = code.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    if code < 100 {
        return Err(bad());
    }
    Ok(code)
}

fn parse_content_length(value: &str) -> Result<u64, ResponseError> {
    if value.is_empty() || value.len() > 19 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ResponseError::ContentLength(value.to_owned()));
    }
    value
        .parse()
        .map_err(|_| ResponseError::ContentLength(value.to_owned()))
}

/// Whether a response to `method_is_head` with `status` carries no body bytes (R4).
pub fn omits_body(status: u16, method_is_head: bool) -> bool {
    method_is_head || status < 200 || status == 204 || status == 304
}

/// Validates the status and headers and serialises the head (R1–R4).
pub fn build_head<'a, I>(
    status: &str,
    headers: I,
    method_is_head: bool,
) -> Result<ResponseHead, ResponseError>
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let code = parse_status(status)?;
    let no_body = omits_body(code, method_is_head);
    let drop_length = code < 200 || code == 204;
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(b"HTTP/1.1 ");
    push_latin1(&mut out, status);
    out.extend_from_slice(b"\r\n");
    let mut content_length = None;
    for (name, value) in headers {
        if name.is_empty() || !name.chars().all(is_tchar) {
            return Err(ResponseError::HeaderName(name.to_owned()));
        }
        if !value.chars().all(is_field_char) {
            return Err(ResponseError::HeaderValue(name.to_owned()));
        }
        let value = value.trim_matches([' ', '\t']);
        if is_hop_by_hop(name) {
            continue;
        }
        if name.eq_ignore_ascii_case("content-length") {
            let n = parse_content_length(value)?;
            match content_length {
                Some(prev) if prev != n => {
                    return Err(ResponseError::ContentLength(format!("{prev} and {n}")))
                }
                Some(_) => continue,
                None => content_length = Some(n),
            }
            if drop_length {
                continue;
            }
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        push_latin1(&mut out, value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(ResponseHead {
        bytes: out,
        status: code,
        content_length: if drop_length { None } else { content_length },
        no_body,
    })
}

/// A short plain-text error response for a protocol error (X1).
pub fn error_response(status: u16, reason: &str, message: &str) -> Vec<u8> {
    let body = format!("{status} {reason}: {message}\n");
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

/// The reason phrase for the statuses the server itself sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        403 => "Forbidden",
        413 => "Content Too Large",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(
        status: &str,
        headers: &[(&str, &str)],
        is_head: bool,
    ) -> Result<ResponseHead, ResponseError> {
        build_head(status, headers.iter().copied(), is_head)
    }

    #[test]
    fn r1_serialises() {
        let h = head(
            "200 OK",
            &[("Content-Type", "text/plain"), ("X-A", " b ")],
            false,
        )
        .unwrap();
        assert_eq!(
            h.bytes,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-A: b\r\n\r\n"
        );
        assert_eq!(h.status, 200);
        assert_eq!(h.content_length, None);
        assert!(!h.no_body);
        let h = head("200 \u{e9}t\u{e9}", &[("X", "caf\u{e9}")], false).unwrap();
        assert_eq!(h.bytes, b"HTTP/1.1 200 \xe9t\xe9\r\nX: caf\xe9\r\n\r\n");
    }

    #[test]
    fn r1_rejects_malformed() {
        for s in [
            "200",
            "2000 OK",
            "20 OK",
            "abc OK",
            "200OK",
            "200 OK\r\nX: y",
            "099 Low",
            "200 \u{100}",
        ] {
            assert!(
                matches!(parse_status(s), Err(ResponseError::Status(_))),
                "{s:?}"
            );
        }
        assert!(parse_status("200 ").is_ok());
        assert!(matches!(
            head("200 OK", &[("Bad Name", "x")], false),
            Err(ResponseError::HeaderName(_))
        ));
        assert!(matches!(
            head("200 OK", &[("", "x")], false),
            Err(ResponseError::HeaderName(_))
        ));
        assert!(matches!(
            head("200 OK", &[("X:", "x")], false),
            Err(ResponseError::HeaderName(_))
        ));
        for v in [
            "a\r\nSet-Cookie: x",
            "a\nb",
            "a\rb",
            "a\0b",
            "a\x01b",
            "\u{263a}",
        ] {
            let err = head("200 OK", &[("X", v)], false).unwrap_err();
            assert!(matches!(err, ResponseError::HeaderValue(_)), "{v:?}");
            assert!(!err.to_string().contains(v), "the value is not echoed");
        }
        assert!(matches!(
            head("200 OK", &[("Content-Length", "abc")], false),
            Err(ResponseError::ContentLength(_))
        ));
        assert!(matches!(
            head("200 OK", &[("Content-Length", "-1")], false),
            Err(ResponseError::ContentLength(_))
        ));
        assert!(matches!(
            head(
                "200 OK",
                &[("Content-Length", "1"), ("content-length", "2")],
                false
            ),
            Err(ResponseError::ContentLength(_))
        ));
    }

    #[test]
    fn r2_strips_hop_by_hop() {
        let hdrs = [
            ("Connection", "close"),
            ("Keep-Alive", "5"),
            ("Transfer-Encoding", "chunked"),
            ("TE", "trailers"),
            ("Trailer", "X"),
            ("Upgrade", "h2c"),
            ("Proxy-Connection", "x"),
            ("X-Kept", "1"),
        ];
        let h = head("200 OK", &hdrs, false).unwrap();
        assert_eq!(h.bytes, b"HTTP/1.1 200 OK\r\nX-Kept: 1\r\n\r\n");
    }

    #[test]
    fn r3_content_length_kept() {
        let h = head(
            "200 OK",
            &[("Content-Length", " 5 "), ("Content-Length", "5")],
            false,
        )
        .unwrap();
        assert_eq!(h.content_length, Some(5));
        assert_eq!(h.bytes, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");
    }

    #[test]
    fn r4_no_body_statuses() {
        let h = head("200 OK", &[("Content-Length", "5")], true).unwrap();
        assert!(h.no_body);
        assert_eq!(h.content_length, Some(5));
        let h = head("304 Not Modified", &[("Content-Length", "5")], false).unwrap();
        assert!(h.no_body);
        assert!(h.bytes.windows(14).any(|w| w == b"Content-Length"));
        for s in ["204 No Content", "103 Early Hints", "100 Continue"] {
            let h = head(s, &[("Content-Length", "5")], false).unwrap();
            assert!(h.no_body);
            assert_eq!(h.content_length, None);
            assert!(!h.bytes.windows(14).any(|w| w == b"Content-Length"), "{s}");
        }
    }

    #[test]
    fn x1_error_response() {
        let r = error_response(400, "Bad Request", "bad");
        let text = String::from_utf8(r).unwrap();
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert_eq!(body, "400 Bad Request: bad\n");
    }
}
