//! gunicorn's access log line (G4), the parts that need no Python: the `access_log_format`
//! parsed once per worker into text and atoms, the atoms' names, and the values computed from
//! bytes (the Basic-auth user, the request-time forms, the quote escaping).
//!
//! gunicorn formats a line as `access_log_format % SafeAtoms(atoms)`: Python's `%` with a
//! mapping, where an unknown atom is `-`, a `{...}` atom is looked up lower-cased, and `"` in
//! a string value becomes `\"`. [`parse`] takes the formats made of `%(name)s` and `%%` only
//! (every format gunicorn documents); any other conversion is left to gunicorn's own code.

/// One part of a parsed format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(Vec<u8>),
    Atom(Atom),
}

/// An atom of `access_log_format`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Atom {
    /// `h`: `REMOTE_ADDR`, `-` when missing.
    RemoteAddr,
    /// `l`: always `-`.
    Dash,
    /// `u`: the user of a Basic `Authorization`, else `-`.
    User,
    /// `t`: the local time, `[%d/%b/%Y:%H:%M:%S %z]`.
    Time,
    /// `r`: `METHOD RAW_URI PROTOCOL`.
    RequestLine,
    /// `s`: the status code as the application gave it.
    Status,
    /// `m`, `U`, `q`, `H`: environ values, `None` when missing.
    Method,
    Path,
    Query,
    Protocol,
    /// `b`, `B`: the body bytes sent.
    Sent,
    /// `f`, `a`: environ values, `-` when missing.
    Referer,
    UserAgent,
    /// `T`, `D`, `M`, `L`: the request time in seconds, microseconds, milliseconds, and
    /// `seconds.micros`.
    Seconds,
    Micros,
    Millis,
    SecondsFraction,
    /// `p`: `<pid>`.
    Pid,
    /// `{name}i`, `{name}o`, `{name}e`: a request header, a response header, an environ value
    /// (`name` lower-cased; the last one whose lower-cased name matches).
    RequestHeader(String),
    ResponseHeader(String),
    Environ(String),
    /// Any other name: `-`.
    Missing,
}

impl Atom {
    /// The atom a `%(name)s` names, by gunicorn's `SafeAtoms` rules.
    pub fn named(name: &str) -> Self {
        if name.starts_with('{') {
            let lower = name.to_lowercase();
            let inner = |suffix: &str| {
                lower
                    .strip_prefix('{')
                    .and_then(|rest| rest.strip_suffix(suffix))
                    .map(str::to_owned)
            };
            if let Some(n) = inner("}i") {
                return Self::RequestHeader(n);
            }
            if let Some(n) = inner("}o") {
                return Self::ResponseHeader(n);
            }
            if let Some(n) = inner("}e") {
                return Self::Environ(n);
            }
            return Self::Missing;
        }
        match name {
            "h" => Self::RemoteAddr,
            "l" => Self::Dash,
            "u" => Self::User,
            "t" => Self::Time,
            "r" => Self::RequestLine,
            "s" => Self::Status,
            "m" => Self::Method,
            "U" => Self::Path,
            "q" => Self::Query,
            "H" => Self::Protocol,
            "b" | "B" => Self::Sent,
            "f" => Self::Referer,
            "a" => Self::UserAgent,
            "T" => Self::Seconds,
            "D" => Self::Micros,
            "M" => Self::Millis,
            "L" => Self::SecondsFraction,
            "p" => Self::Pid,
            _ => Self::Missing,
        }
    }
}

/// The pieces of `format`, or `None` when it uses anything but `%(name)s` and `%%` (a
/// conversion other than `s`, a flag, a width, a precision, a `%` without a name) or is not
/// a valid format at all.
pub fn parse(format: &str) -> Option<Vec<Piece>> {
    let mut pieces = Vec::new();
    let mut text = Vec::new();
    let mut rest = format;
    while let Some(at) = rest.find('%') {
        text.extend_from_slice(rest.get(..at)?.as_bytes());
        let after = rest.get(at + 1..)?;
        if let Some(tail) = after.strip_prefix('%') {
            text.push(b'%');
            rest = tail;
            continue;
        }
        let inner = after.strip_prefix('(')?;
        // Python's rule: the name runs to the parenthesis that balances the opening one.
        let mut depth = 1usize;
        let mut end = None;
        for (i, c) in inner.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(i);
                        break;
                    }
                }
                _ => {}
            }
        }
        let end = end?;
        let name = inner.get(..end)?;
        let tail = inner.get(end + 1..)?.strip_prefix('s')?;
        if !text.is_empty() {
            pieces.push(Piece::Text(std::mem::take(&mut text)));
        }
        pieces.push(Piece::Atom(Atom::named(name)));
        rest = tail;
    }
    text.extend_from_slice(rest.as_bytes());
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Some(pieces)
}

/// Appends `value` with each `"` as `\"` (what gunicorn's `SafeAtoms` does to strings).
pub fn push_escaped(out: &mut Vec<u8>, value: &[u8]) {
    for &b in value {
        if b == b'"' {
            out.extend_from_slice(b"\\\"");
        } else {
            out.push(b);
        }
    }
}

/// Appends the user name of an `Authorization` value as gunicorn's logger finds it: for a
/// value that starts with `basic` (any case), the text after the first space, base64-decoded
/// as Python's `b64decode` does (characters outside the alphabet skipped), up to the first
/// `:`, when that is UTF-8. `None` for anything else (and gunicorn logs an empty user as `-`
/// too).
pub fn basic_user_into(authorization: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let prefix = authorization.get(..5)?;
    if !prefix.eq_ignore_ascii_case(b"basic") {
        return None;
    }
    let space = authorization.iter().position(|&b| b == b' ')?;
    let encoded = authorization.get(space + 1..)?;
    let decoded = b64decode(encoded)?;
    let user = decoded.split(|&b| b == b':').next().unwrap_or_default();
    std::str::from_utf8(user).ok()?;
    out.extend_from_slice(user);
    Some(())
}

/// Python's `binascii.a2b_base64(data, strict_mode=False)`: characters outside the alphabet
/// are skipped, a complete pad sequence ends the input, and leftover bits are an error.
fn b64decode(data: &[u8]) -> Option<Vec<u8>> {
    fn sextet(c: u8) -> Option<u8> {
        match c {
            b'A'..=b'Z' => Some(c - b'A'),
            b'a'..=b'z' => Some(c - b'a' + 26),
            b'0'..=b'9' => Some(c - b'0' + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let mut out = Vec::with_capacity(data.len() / 4 * 3);
    let mut quad = 0u8;
    let mut left = 0u8;
    let mut pads = 0u8;
    for &c in data {
        if c == b'=' {
            pads += 1;
            if quad >= 2 && quad + pads >= 4 {
                return Some(out);
            }
            continue;
        }
        let Some(v) = sextet(c) else { continue };
        pads = 0;
        match quad {
            0 => {
                left = v;
                quad = 1;
            }
            1 => {
                out.push((left << 2) | (v >> 4));
                left = v & 0x0f;
                quad = 2;
            }
            2 => {
                out.push((left << 4) | (v >> 2));
                left = v & 0x03;
                quad = 3;
            }
            _ => {
                out.push((left << 6) | v);
                quad = 0;
            }
        }
    }
    (quad == 0).then_some(out)
}

/// The request-time atoms from a duration, as gunicorn computes them from a `timedelta`
/// (whose `seconds` leave out whole days).
pub fn push_time(out: &mut Vec<u8>, atom: &Atom, elapsed: std::time::Duration) {
    let secs = elapsed.as_secs() % 86_400;
    let micros = u64::from(elapsed.subsec_micros());
    let text = match atom {
        Atom::Seconds => secs.to_string(),
        Atom::Micros => (secs * 1_000_000 + micros).to_string(),
        Atom::Millis => (secs * 1000 + micros / 1000).to_string(),
        Atom::SecondsFraction => format!("{secs}.{micros:06}"),
        _ => return,
    };
    out.extend_from_slice(text.as_bytes());
}

/// gunicorn's statsd duration: `seconds * 1000 + microseconds / 1000` as Python's `str` of a
/// float writes it (shortest round trip, at least one decimal).
pub fn duration_ms(elapsed: std::time::Duration) -> String {
    let secs = (elapsed.as_secs() % 86_400) as f64;
    let ms = secs * 1000.0 + f64::from(elapsed.subsec_micros()) / 1000.0;
    let text = format!("{ms}");
    if text.contains(['.', 'e', 'E']) || !ms.is_finite() {
        text
    } else {
        text + ".0"
    }
}

/// The datagrams of one request's statsd metrics, each made from a template that gunicorn's
/// own statsd logger filled for a sample request (its names, types, prefix and tags): the
/// duration and the status code go where the sample's were.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Metric {
    Constant(Vec<u8>),
    /// Text before and after the duration.
    Duration(Vec<u8>, Vec<u8>),
    /// Text before and after the status code.
    Status(Vec<u8>, Vec<u8>),
}

impl Metric {
    /// The template of `sample`, a datagram sent for a request with `duration` and `status`.
    pub fn of(sample: &[u8], duration: &[u8], status: &[u8]) -> Self {
        let split = |needle: &[u8]| {
            sample
                .windows(needle.len().max(1))
                .rposition(|w| w == needle)
                .map(|at| {
                    let (before, rest) = sample.split_at(at);
                    (
                        before.to_vec(),
                        rest.get(needle.len()..).unwrap_or_default().to_vec(),
                    )
                })
        };
        if let Some((a, b)) = split(duration) {
            return Self::Duration(a, b);
        }
        if let Some((a, b)) = split(status) {
            return Self::Status(a, b);
        }
        Self::Constant(sample.to_vec())
    }

    /// Appends this metric for a request; `None` status (not a number) leaves a status
    /// metric out.
    pub fn push(&self, out: &mut Vec<u8>, duration: &str, status: Option<u16>) {
        match self {
            Self::Constant(c) => out.extend_from_slice(c),
            Self::Duration(a, b) => {
                out.extend_from_slice(a);
                out.extend_from_slice(duration.as_bytes());
                out.extend_from_slice(b);
            }
            Self::Status(a, b) => {
                let Some(code) = status else { return };
                out.extend_from_slice(a);
                out.extend_from_slice(code.to_string().as_bytes());
                out.extend_from_slice(b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const DEFAULT: &str = r#"%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s""#;

    #[test]
    fn g4_parses_gunicorns_default_format() {
        let pieces = parse(DEFAULT).unwrap();
        assert_eq!(pieces.first(), Some(&Piece::Atom(Atom::RemoteAddr)));
        assert_eq!(pieces.get(1), Some(&Piece::Text(b" ".to_vec())));
        assert_eq!(pieces.get(7), Some(&Piece::Text(b" \"".to_vec())));
        assert_eq!(pieces.last(), Some(&Piece::Text(b"\"".to_vec())));
        assert_eq!(
            pieces
                .iter()
                .filter(|p| matches!(p, Piece::Atom(_)))
                .count(),
            9
        );
    }

    #[test]
    fn g4_names_and_braces() {
        let pieces = parse(
            "%({X-Forwarded-For}i)s %({Content-Type}o)s %({REMOTE_ADDR}e)s %({x}z)s %(nope)s %%",
        )
        .unwrap();
        let atoms: Vec<_> = pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Atom(a) => Some(a.clone()),
                Piece::Text(_) => None,
            })
            .collect();
        assert_eq!(
            atoms,
            vec![
                Atom::RequestHeader("x-forwarded-for".into()),
                Atom::ResponseHeader("content-type".into()),
                Atom::Environ("remote_addr".into()),
                Atom::Missing,
                Atom::Missing,
            ]
        );
        assert_eq!(pieces.last(), Some(&Piece::Text(b" %".to_vec())));
        // The name runs to the balancing parenthesis, as in Python.
        assert_eq!(parse("%((a))s").unwrap(), vec![Piece::Atom(Atom::Missing)]);
    }

    #[test]
    fn g4_other_conversions_are_left_to_gunicorn() {
        for format in [
            "%(D)d", "%(h)-10s", "%(h)r", "%s", "100%", "%(h", "%(h)", "%(h).3s",
        ] {
            assert_eq!(parse(format), None, "{format}");
        }
        assert_eq!(parse("plain"), Some(vec![Piece::Text(b"plain".to_vec())]));
        assert_eq!(parse(""), Some(vec![]));
    }

    #[test]
    fn g4_quotes_are_escaped() {
        let mut out = Vec::new();
        push_escaped(&mut out, br#"say "hi""#);
        assert_eq!(out, br#"say \"hi\""#);
    }

    fn user(value: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        basic_user_into(value, &mut out).map(|()| out)
    }

    #[test]
    fn g4_basic_user_as_gunicorn_decodes_it() {
        assert_eq!(
            user(b"Basic YWxpY2U6c2VjcmV0").as_deref(),
            Some(&b"alice"[..])
        );
        assert_eq!(user(b"basic YWxpY2U=").as_deref(), Some(&b"alice"[..]));
        // Characters outside the alphabet are skipped; a full pad sequence ends the input.
        assert_eq!(
            user(b"BASIC YW!xp Y2U=garbage").as_deref(),
            Some(&b"alice"[..])
        );
        assert_eq!(user(b"Basic Ym9i").as_deref(), Some(&b"bob"[..]));
        // Leftover bits: Python raises, gunicorn logs no user.
        assert_eq!(user(b"Basic YWxpY2U"), None);
        assert_eq!(user(b"Basic Y"), None);
        assert_eq!(user(b"Bearer abc"), None);
        assert_eq!(user(b"Basic"), None);
        // Not UTF-8.
        assert_eq!(user(b"Basic /w=="), None);
        assert_eq!(user(b"Basic ").as_deref(), Some(&b""[..]));
    }

    #[test]
    fn g4_statsd_duration_as_python_writes_it() {
        assert_eq!(duration_ms(Duration::from_micros(353)), "0.353");
        assert_eq!(duration_ms(Duration::from_micros(2_000_353)), "2000.353");
        assert_eq!(duration_ms(Duration::ZERO), "0.0");
        assert_eq!(duration_ms(Duration::from_secs(3)), "3000.0");
        assert_eq!(duration_ms(Duration::from_micros(1)), "0.001");
    }

    #[test]
    fn g4_statsd_templates_from_gunicorns_sample() {
        let d = Metric::of(
            b"app.gunicorn.request.duration:1.234|ms|#env:1",
            b"1.234",
            b"599",
        );
        let s = Metric::of(
            b"app.gunicorn.request.status.599:1|c|@1.0",
            b"1.234",
            b"599",
        );
        let c = Metric::of(b"app.gunicorn.requests:1|c|@1.0", b"1.234", b"599");
        let mut out = Vec::new();
        for m in [&d, &s, &c] {
            m.push(&mut out, "0.5", Some(404));
            out.push(b'\n');
        }
        assert_eq!(
            out,
            b"app.gunicorn.request.duration:0.5|ms|#env:1\napp.gunicorn.request.status.404:1|c|@1.0\napp.gunicorn.requests:1|c|@1.0\n"
        );
        let mut none = Vec::new();
        s.push(&mut none, "0.5", None);
        assert!(none.is_empty());
    }

    #[test]
    fn g4_request_time_forms() {
        let d = Duration::from_micros(2_003_456);
        let form = |atom: Atom| {
            let mut out = Vec::new();
            push_time(&mut out, &atom, d);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(form(Atom::Seconds), "2");
        assert_eq!(form(Atom::Micros), "2003456");
        assert_eq!(form(Atom::Millis), "2003");
        assert_eq!(form(Atom::SecondsFraction), "2.003456");
    }
}
