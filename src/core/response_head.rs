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

/// Validates the status and headers and serialises the head (R1–R4): a PEP 3333 status
/// string and `str` headers, which must be latin-1.
pub fn build_head<'a, I>(
    status: &str,
    headers: I,
    method_is_head: bool,
) -> Result<ResponseHead, ResponseError>
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let code = parse_status(status)?;
    let mut line = Vec::with_capacity(status.len());
    push_latin1(&mut line, status);
    let mut failed = None;
    let fields = headers.into_iter().map_while(|(name, value)| {
        if name.is_empty() || !name.chars().all(is_tchar) {
            failed = Some(ResponseError::HeaderName(name.to_owned()));
            return None;
        }
        if !value.chars().all(is_field_char) {
            failed = Some(ResponseError::HeaderValue(name.to_owned()));
            return None;
        }
        let value = if value.is_ascii() {
            std::borrow::Cow::Borrowed(value.as_bytes())
        } else {
            let mut out = Vec::with_capacity(value.len());
            push_latin1(&mut out, value);
            std::borrow::Cow::Owned(out)
        };
        Some((name.as_bytes(), value))
    });
    let head = serialise(code, &line, fields, method_is_head);
    match failed {
        Some(err) => Err(err),
        None => head,
    }
}

/// [`build_head`] for a numeric status and byte headers (an ASGI `http.response.start`):
/// the reason is the status's standard phrase.
pub fn build_head_bytes<'a, I>(
    status: u16,
    headers: I,
    method_is_head: bool,
) -> Result<ResponseHead, ResponseError>
where
    I: IntoIterator<Item = (&'a [u8], &'a [u8])>,
{
    if !(100..=999).contains(&status) {
        return Err(ResponseError::Status(status.to_string()));
    }
    let line = format!("{status} {}", phrase(status));
    serialise(
        status,
        line.as_bytes(),
        headers
            .into_iter()
            .map(|(n, v)| (n, std::borrow::Cow::Borrowed(v))),
        method_is_head,
    )
}

fn is_field_byte(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80
}

fn trim_blanks(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|&b| b != b' ' && b != b'\t');
    let Some(start) = start else {
        return &[];
    };
    let end = v
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |e| e + 1);
    v.get(start..end).unwrap_or_default()
}

/// The one serialisation of a response head: `HTTP/1.1 <line>`, the checked headers minus
/// hop-by-hop ones, `Content-Length` kept (checked, and dropped for 1xx and 204), a blank line.
fn serialise<'a, V, I>(
    code: u16,
    line: &[u8],
    headers: I,
    method_is_head: bool,
) -> Result<ResponseHead, ResponseError>
where
    V: AsRef<[u8]>,
    I: IntoIterator<Item = (&'a [u8], V)>,
{
    let no_body = omits_body(code, method_is_head);
    let drop_length = code < 200 || code == 204;
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(line);
    out.extend_from_slice(b"\r\n");
    let mut content_length = None;
    for (name, value) in headers {
        let value = value.as_ref();
        let shown = || String::from_utf8_lossy(name).into_owned();
        if name.is_empty() || !name.iter().all(|&b| is_tchar(char::from(b))) {
            return Err(ResponseError::HeaderName(shown()));
        }
        if !value.iter().all(|&b| is_field_byte(b)) {
            return Err(ResponseError::HeaderValue(shown()));
        }
        let value = trim_blanks(value);
        // Names are ASCII tokens here.
        let text = std::str::from_utf8(name).unwrap_or_default();
        if is_hop_by_hop(text) {
            continue;
        }
        if text.eq_ignore_ascii_case("content-length") {
            let n = parse_content_length(&String::from_utf8_lossy(value))?;
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
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
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

/// The standard reason phrase of a status (RFC 9110 and the registered extensions), empty
/// for a code without one.
pub fn phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        102 => "Processing",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        207 => "Multi-Status",
        208 => "Already Reported",
        226 => "IM Used",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        305 => "Use Proxy",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        418 => "I'm a Teapot",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        423 => "Locked",
        424 => "Failed Dependency",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        506 => "Variant Also Negotiates",
        507 => "Insufficient Storage",
        508 => "Loop Detected",
        510 => "Not Extended",
        511 => "Network Authentication Required",
        _ => "",
    }
}

/// A short plain-text error response for a protocol error (X1).
pub fn error_response(status: u16, reason: &str, message: &str) -> Vec<u8> {
    error_response_with(status, reason, message, &[])
}

/// [`error_response`] with headers of its own (`Sec-WebSocket-Version` for a handshake of
/// another version).
pub fn error_response_with(
    status: u16,
    reason: &str,
    message: &str,
    headers: &[(&str, &str)],
) -> Vec<u8> {
    let body = format!("{status} {reason}: {message}\n");
    let extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n{extra}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

/// The reason phrase for the statuses the server itself sends.
pub fn reason(status: u16) -> &'static str {
    match phrase(status) {
        "" => "Error",
        p => p,
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
    fn r1_byte_headers() {
        let h = build_head_bytes(
            201,
            [
                (&b"content-type"[..], &b"text/plain"[..]),
                (b"x-a", b" caf\xe9 "),
            ],
            false,
        )
        .unwrap();
        assert_eq!(
            h.bytes,
            b"HTTP/1.1 201 Created\r\ncontent-type: text/plain\r\nx-a: caf\xe9\r\n\r\n"
        );
        let h = build_head_bytes(299, [], false).unwrap();
        assert_eq!(h.bytes, b"HTTP/1.1 299 \r\n\r\n");
        for bad in [99, 1000, 0] {
            assert!(matches!(
                build_head_bytes(bad, [], false),
                Err(ResponseError::Status(_))
            ));
        }
        assert!(matches!(
            build_head_bytes(200, [(&b"x y"[..], &b"1"[..])], false),
            Err(ResponseError::HeaderName(_))
        ));
        for v in [&b"a\r\nb"[..], b"a\0", b"\x7f", b"a\nb"] {
            assert!(matches!(
                build_head_bytes(200, [(&b"x"[..], v)], false),
                Err(ResponseError::HeaderValue(_))
            ));
        }
        let h = build_head_bytes(
            204,
            [
                (&b"Content-Length"[..], &b"3"[..]),
                (b"Connection", b"close"),
            ],
            false,
        )
        .unwrap();
        assert_eq!(h.bytes, b"HTTP/1.1 204 No Content\r\n\r\n");
        assert!(h.no_body);
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
