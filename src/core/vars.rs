//! Validation of the vars block: names, values, repeats, limits and `CONTENT_LENGTH` (V1–V6, F4).
//!
//! [`parse_head`] is the sans-I/O entry point: give it the bytes received so far, it answers how
//! many bytes the head needs, or the validated request head with the body's length.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use smallvec::SmallVec;

use crate::core::errors::ProtocolError;
use crate::core::framing::{read_header, slice, Header, RawVar, Start, VarIter, HEADER_SIZE};
use crate::core::keys;
use crate::core::kind::{last_wins, Control, Kind, CONTROL_COUNT};

/// At most this many vars in one packet, whatever the settings (V4).
pub const MAX_VARS: usize = 1000;

/// Largest `CONTENT_LENGTH` that can frame a body: what fits a signed 64-bit length.
pub const MAX_CONTENT_LENGTH: u64 = i64::MAX as u64;

/// gunicorn's request limits, with its meanings; 0 means unlimited (V4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// `limit_request_line`: bounds `REQUEST_URI`.
    pub request_line: usize,
    /// `limit_request_fields`: bounds the number of `HTTP_*` vars.
    pub fields: usize,
    /// `limit_request_field_size`: bounds each `HTTP_*` var, measured as its header line
    /// `Name: value`.
    pub field_size: usize,
}

impl Limits {
    /// gunicorn's defaults: `limit_request_line` 4094, `limit_request_fields` 100,
    /// `limit_request_field_size` 8190.
    pub const GUNICORN: Self = Self {
        request_line: 4094,
        fields: 100,
        field_size: 8190,
    };
}

/// The method of a request that sent no `REQUEST_METHOD` (V6).
pub const DEFAULT_METHOD: &[u8] = b"GET";

/// Marks "no index" in the `u16` links below.
pub const NONE: u16 = u16::MAX;

/// One validated var.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Var {
    pub raw: RawVar,
    pub kind: Kind,
    /// Left out of the environ: a copy replaced by a later one or the same as an earlier one
    /// (`superseded`), or a later copy of a repeated header (joined into the first).
    pub shadowed: bool,
    /// Not part of the request at all: an earlier copy of a var whose last copy wins, or a
    /// copy with the same value as the one before it (V3).
    pub superseded: bool,
    /// For a repeated header: the index of its next occurrence, [`NONE`] at the end of the chain.
    pub next_repeat: u16,
    /// The name's index in [`keys::KEY_NAMES`], [`UNKNOWN`] for other names.
    pub known: u8,
}

/// Marks a name that is not in [`keys::KEY_NAMES`].
pub const UNKNOWN: u8 = u8::MAX;

impl Var {
    /// The name's index in [`keys::KEY_NAMES`], if it is there.
    pub fn known(&self) -> Option<usize> {
        (self.known != UNKNOWN).then_some(usize::from(self.known))
    }
}

/// A validated request head.
#[derive(Debug, Clone)]
pub struct Head {
    pub header: Header,
    pub vars: Vec<Var>,
    /// Index in `vars` of each control var present.
    pub control: [u16; CONTROL_COUNT],
    pub content_length: u64,
}

impl Head {
    /// `REQUEST_METHOD`, or `GET` when nginx sent none (V6).
    pub fn method<'b>(&self, block: &'b [u8]) -> &'b [u8] {
        self.control_value(block, Control::RequestMethod)
            .unwrap_or(DEFAULT_METHOD)
    }

    /// Whether the request is a `HEAD` (its response has no body, R4).
    pub fn is_head(&self, block: &[u8]) -> bool {
        self.method(block) == b"HEAD"
    }

    /// Whether a control var was sent.
    pub fn has(&self, which: Control) -> bool {
        self.control.get(which as usize).is_some_and(|&i| i != NONE)
    }

    /// `REQUEST_URI`, else `PATH_INFO?QUERY_STRING` (E6).
    pub fn request_uri<'b>(&self, block: &'b [u8]) -> std::borrow::Cow<'b, [u8]> {
        if let Some(uri) = self.control_value(block, Control::RequestUri) {
            return std::borrow::Cow::Borrowed(uri);
        }
        let mut uri = self
            .control_value(block, Control::PathInfo)
            .unwrap_or_default()
            .to_vec();
        if let Some(q) = self
            .control_value(block, Control::QueryString)
            .filter(|q| !q.is_empty())
        {
            uri.push(b'?');
            uri.extend_from_slice(q);
        }
        std::borrow::Cow::Owned(uri)
    }

    /// The request headers as gunicorn lists them (`req.headers`, G3): `(NAME, value)` for
    /// each `HTTP_*` var as sent (`HTTP_X_Y` as `X-Y`), and `CONTENT-TYPE`/`CONTENT-LENGTH`
    /// when not empty, in arrival order; copies a later one wins over are left out (V3).
    pub fn headers<'b>(&'b self, block: &'b [u8]) -> impl Iterator<Item = (Vec<u8>, &'b [u8])> {
        let dashes = |name: &[u8]| -> Vec<u8> {
            name.iter()
                .map(|&b| if b == b'_' { b'-' } else { b })
                .collect()
        };
        self.vars
            .iter()
            .filter(|v| !v.superseded)
            .filter_map(move |var| {
                let key = slice(block, var.raw.key);
                let value = slice(block, var.raw.value);
                match var.kind {
                    Kind::Http | Kind::HiddenHttp => {
                        Some((dashes(key.get(5..).unwrap_or_default()), value))
                    }
                    Kind::Control(Control::ContentType | Control::ContentLength)
                        if !value.is_empty() =>
                    {
                        Some((dashes(key), value))
                    }
                    _ => None,
                }
            })
    }

    /// The value of a control var, if it was sent.
    pub fn control_value<'b>(&self, block: &'b [u8], which: Control) -> Option<&'b [u8]> {
        let idx = *self.control.get(which as usize)?;
        let var = self.vars.get(usize::from(idx))?;
        Some(slice(block, var.raw.value))
    }
}

/// Progress of [`parse_head`].
#[derive(Debug)]
pub enum Progress {
    /// The head needs this many bytes in total; fewer have arrived.
    NeedMore(usize),
    /// The head is complete and valid; the body starts at `header.head_size()`.
    Done(Head),
}

#[derive(Default)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word.iter_mut().zip(chunk).for_each(|(w, b)| *w = *b);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
}

type FxMap<'a> = HashMap<&'a [u8], u16, BuildHasherDefault<FxHasher>>;

/// Names seen so far and where: a short list scanned linearly (the usual 15–40 vars need no
/// allocation), a hash map once it grows, so a hostile 1000-var block stays linear in cost.
/// Each listed name carries a tag of its length and two of its bytes, compared before the bytes.
#[derive(Default)]
struct Seen<'a> {
    small: SmallVec<[(u32, &'a [u8], u16); 32]>,
    map: Option<FxMap<'a>>,
}

/// Length, middle byte and last byte of a name: names of a block rarely share all three.
fn tag(key: &[u8]) -> u32 {
    let len = key.len() as u32 & 0xffff;
    let mid = key.get(key.len() / 2).copied().unwrap_or(0);
    let last = key.last().copied().unwrap_or(0);
    len | u32::from(mid) << 16 | u32::from(last) << 24
}

impl<'a> Seen<'a> {
    fn get(&self, key: &[u8]) -> Option<u16> {
        match &self.map {
            Some(map) => map.get(key).copied(),
            None => {
                let t = tag(key);
                self.small
                    .iter()
                    .find(|(kt, k, _)| *kt == t && *k == key)
                    .map(|(_, _, i)| *i)
            }
        }
    }

    /// Records where `key` was seen last.
    fn insert(&mut self, key: &'a [u8], idx: u16) {
        let t = tag(key);
        if let Some(map) = &mut self.map {
            map.insert(key, idx);
        } else if let Some(entry) = self
            .small
            .iter_mut()
            .find(|(kt, k, _)| *kt == t && *k == key)
        {
            entry.2 = idx;
        } else {
            self.add(key, idx);
        }
    }

    /// Records a name not seen before.
    fn add(&mut self, key: &'a [u8], idx: u16) {
        if let Some(map) = &mut self.map {
            map.insert(key, idx);
        } else if self.small.len() < self.small.inline_size() {
            self.small.push((tag(key), key, idx));
        } else {
            let mut map: FxMap = self.small.drain(..).map(|(_, k, i)| (k, i)).collect();
            map.insert(key, idx);
            self.map = Some(map);
        }
    }
}

fn is_key_byte(b: u8) -> bool {
    (0x21..=0x7e).contains(&b)
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Values at least this long are scanned by `memchr3` (vector code); shorter ones, most of
/// them, eight bytes at a time in a `u64`, which costs less than the call's setup.
const VECTOR_SCAN: usize = 64;

/// Whether a value holds a CR, LF or NUL.
fn has_line_break(value: &[u8]) -> bool {
    if value.len() >= VECTOR_SCAN {
        return memchr::memchr3(b'\r', b'\n', 0, value).is_some();
    }
    let mut words = value.chunks_exact(8);
    let found = words.by_ref().any(|w| {
        let mut word = [0u8; 8];
        word.copy_from_slice(w);
        word_has_line_break(u64::from_le_bytes(word))
    });
    // The tail, padded with spaces.
    let mut word = [b' '; 8];
    word.iter_mut()
        .zip(words.remainder())
        .for_each(|(w, b)| *w = *b);
    found || word_has_line_break(u64::from_le_bytes(word))
}

/// Whether one of the eight bytes of `word` is CR, LF or NUL: a byte is zero in `x` exactly
/// when `(x - 0x01..) & !x & 0x80..` has its top bit set (exact as a yes or no).
fn word_has_line_break(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const TOPS: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & TOPS;
    zero_byte(word)
        | zero_byte(word ^ (ONES * u64::from(b'\r')))
        | zero_byte(word ^ (ONES * u64::from(b'\n')))
        != 0
}

/// Whether every byte of a name is printable ASCII without space (V2).
fn is_key(key: &[u8]) -> bool {
    key.iter().fold(true, |ok, &b| ok & is_key_byte(b))
}

/// Parses `CONTENT_LENGTH` (V5): absent or empty is 0; else 1–19 ASCII digits.
pub fn content_length(value: Option<&[u8]>) -> Result<u64, ProtocolError> {
    let value = match value {
        None | Some(b"") => return Ok(0),
        Some(v) => v,
    };
    if value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return Err(bad_content_length(value));
    }
    let n = value
        .iter()
        .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
    if n > MAX_CONTENT_LENGTH {
        return Err(ProtocolError::BodyTooLarge {
            size: n,
            limit: MAX_CONTENT_LENGTH,
        });
    }
    Ok(n)
}

#[cold]
fn bad_content_length(value: &[u8]) -> ProtocolError {
    ProtocolError::invalid(format!(
        "invalid CONTENT_LENGTH {:?}: it must be 1 to 19 digits",
        String::from_utf8_lossy(value)
    ))
}

#[cold]
fn bad_key(key: &[u8]) -> ProtocolError {
    ProtocolError::invalid(format!(
        "invalid var name {:?}: names are printable ASCII without spaces",
        String::from_utf8_lossy(key)
    ))
}

#[cold]
fn bad_value(key: &[u8]) -> ProtocolError {
    ProtocolError::invalid(format!(
        "var {} has a CR, LF or NUL in its value",
        String::from_utf8_lossy(key)
    ))
}

#[cold]
fn conflicting_lengths(first: &[u8], second: &[u8]) -> ProtocolError {
    ProtocolError::invalid(format!(
        "CONTENT_LENGTH is sent twice, as {:?} and {:?}: the body's length is ambiguous",
        String::from_utf8_lossy(first),
        String::from_utf8_lossy(second)
    ))
}

/// A repeat, at `idx`, of the var whose copy at `counting` counts so far (V3): the same value
/// as the copy before collapses into it; a var whose last copy wins replaces it; a repeated
/// client header is joined to it, in order. Returns the index of the copy that counts now.
fn repeat(
    vars: &mut [Var],
    var: &mut Var,
    idx: u16,
    counting: u16,
    block: &[u8],
    chains: &mut SmallVec<[(u16, u16); 4]>,
) -> Result<u16, ProtocolError> {
    let key = slice(block, var.raw.key);
    let value = slice(block, var.raw.value);
    let joins = !last_wins(var.kind, key);
    // The copy before this one: the last one joined so far, or the one that counts.
    let chain = chains.iter_mut().find(|(first, _)| *first == counting);
    let before = match (&chain, joins) {
        (Some((_, tail)), true) => *tail,
        _ => counting,
    };
    let Some(prev) = vars.get_mut(usize::from(before)) else {
        return Ok(counting);
    };
    if slice(block, prev.raw.value) == value {
        var.superseded = true;
        var.shadowed = true;
        return Ok(counting);
    }
    if !joins {
        if var.kind == Kind::Control(Control::ContentLength) {
            return Err(conflicting_lengths(slice(block, prev.raw.value), value));
        }
        prev.superseded = true;
        prev.shadowed = true;
        return Ok(idx);
    }
    prev.next_repeat = idx;
    var.shadowed = true;
    match chain {
        Some(entry) => entry.1 = idx,
        None => chains.push((counting, idx)),
    }
    Ok(counting)
}

/// Validates a vars block into a [`Head`] (F3, V2–V6).
pub fn parse_vars(header: Header, block: &[u8], limits: &Limits) -> Result<Head, ProtocolError> {
    // On the heap, so that the head stays small to move and to keep in a Python object; a var
    // takes at least 4 bytes of the block.
    let mut vars: Vec<Var> = Vec::with_capacity((block.len() / 4).min(48));
    let mut control = [NONE; CONTROL_COUNT];
    // Where the copy that counts of each other name is.
    let mut seen = Seen::default();
    // First and last copy of each joined header.
    let mut chains: SmallVec<[(u16, u16); 4]> = SmallVec::new();
    let mut header_count = 0usize;

    for raw in VarIter::new(block) {
        let raw = raw?;
        if vars.len() >= MAX_VARS {
            return Err(ProtocolError::too_large(format!(
                "more than {MAX_VARS} vars in one packet"
            )));
        }
        let key = slice(block, raw.key);
        let value = slice(block, raw.value);
        // A known name is valid; any other is checked byte by byte (V2).
        let known = keys::key_index(key);
        let kind = match known {
            Some(i) => keys::known_kind(i),
            None if is_key(key) => Kind::of(key),
            None => return Err(bad_key(key)),
        };
        let idx = vars.len() as u16;
        let mut var = Var {
            raw,
            kind,
            shadowed: false,
            superseded: false,
            next_repeat: NONE,
            known: known.and_then(|i| u8::try_from(i).ok()).unwrap_or(UNKNOWN),
        };
        match kind {
            Kind::Control(c) => {
                if has_line_break(value) {
                    return Err(bad_value(key));
                }
                if let Some(slot) = control.get_mut(c as usize) {
                    *slot = match *slot {
                        NONE => idx,
                        counting => repeat(&mut vars, &mut var, idx, counting, block, &mut chains)?,
                    };
                }
            }
            _ => {
                if kind.is_header() {
                    if has_line_break(value) {
                        return Err(bad_value(key));
                    }
                    header_count += 1;
                    if limits.fields > 0 && header_count > limits.fields {
                        return Err(ProtocolError::too_large(format!(
                            "more than {} request headers (limit_request_fields)",
                            limits.fields
                        )));
                    }
                    let line = key.len() - 5 + 2 + value.len();
                    if limits.field_size > 0 && line > limits.field_size {
                        return Err(ProtocolError::too_large(format!(
                            "request header {} is {line} bytes, over limit_request_field_size ({})",
                            String::from_utf8_lossy(key),
                            limits.field_size
                        )));
                    }
                }
                match seen.get(key) {
                    None => seen.add(key, idx),
                    Some(counting) => {
                        let now = repeat(&mut vars, &mut var, idx, counting, block, &mut chains)?;
                        if now != counting {
                            seen.insert(key, now);
                        }
                    }
                }
            }
        }
        vars.push(var);
    }

    let head = Head {
        header,
        vars,
        control,
        content_length: 0,
    };
    // No REQUEST_METHOD (nginx without `include uwsgi_params;`, or an empty block) is served
    // as GET (V6); one that is sent must be a token.
    if let Some(method) = head.control_value(block, Control::RequestMethod) {
        if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
            return Err(ProtocolError::invalid(format!(
                "invalid REQUEST_METHOD {:?}",
                String::from_utf8_lossy(method)
            )));
        }
    }
    if let Some(uri) = head.control_value(block, Control::RequestUri) {
        if limits.request_line > 0 && uri.len() > limits.request_line {
            return Err(ProtocolError::UriTooLong {
                size: uri.len(),
                limit: limits.request_line,
            });
        }
    }
    let content_length = content_length(head.control_value(block, Control::ContentLength))?;
    Ok(Head {
        content_length,
        ..head
    })
}

/// Sans-I/O entry point: the bytes received so far on a connection (F1, F2, F4).
///
/// Returns [`Progress::NeedMore`] with the total the head needs, or the validated head. An
/// unsupported modifier1 or a foreign protocol is refused as soon as the header shows it.
pub fn parse_head(buf: &[u8], limits: &Limits) -> Result<Progress, ProtocolError> {
    let header = match read_header(buf)? {
        Start::NeedMore => return Ok(Progress::NeedMore(HEADER_SIZE)),
        Start::Header(h) => h,
    };
    if header.modifier1 != 0 && header.modifier1 != 30 {
        return Err(ProtocolError::UnsupportedModifier(header.modifier1));
    }
    let end = header.head_size();
    match buf.get(HEADER_SIZE..end) {
        Some(block) => parse_vars(header, block, limits).map(Progress::Done),
        None => Ok(Progress::NeedMore(end)),
    }
}

/// modifier1 30 (F4): where `PATH_INFO` starts once `SCRIPT_NAME` is taken off, when
/// `SCRIPT_NAME` is a prefix of it that ends on a `/` boundary. Returns `(script_len, path_start)`:
/// the length of `SCRIPT_NAME` to keep (without a trailing `/`) and the offset of the new
/// `PATH_INFO` in the old one.
pub fn strip_script_name(path: &[u8], script: &[u8]) -> Option<(usize, usize)> {
    let trimmed = script.strip_suffix(b"/").unwrap_or(script);
    if trimmed.is_empty() {
        return None;
    }
    let rest = path.strip_prefix(trimmed)?;
    if rest.is_empty() || rest.first() == Some(&b'/') {
        Some((trimmed.len(), trimmed.len()))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::framing::tests::packet;

    fn limits() -> Limits {
        Limits::GUNICORN
    }

    fn parse(pairs: &[(&[u8], &[u8])]) -> Result<Head, ProtocolError> {
        let pkt = packet(0, pairs);
        match parse_head(&pkt, &limits())? {
            Progress::Done(h) => Ok(h),
            Progress::NeedMore(n) => panic!("needs {n}"),
        }
    }

    fn get(pairs: &[(&[u8], &[u8])]) -> Head {
        parse(pairs).unwrap()
    }

    const GET: (&[u8], &[u8]) = (b"REQUEST_METHOD", b"GET");

    #[test]
    fn v2_line_break_found_at_every_length_and_position() {
        // Bytes next to the refused ones, and high bytes, are not line breaks.
        let fillers = [
            b'a', b' ', 0x01, 0x09, 0x0b, 0x0c, 0x0e, 0x7f, 0x80, 0x8d, 0xff,
        ];
        for len in 0..VECTOR_SCAN + 20 {
            for filler in fillers {
                let clean = vec![filler; len];
                assert!(!has_line_break(&clean), "{len} x {filler:#x}");
                for pos in 0..len {
                    for bad in [0u8, b'\r', b'\n'] {
                        let mut value = clean.clone();
                        value[pos] = bad;
                        assert!(
                            has_line_break(&value),
                            "{len} {pos} {bad:#x} in {filler:#x}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn e6_request_uri_or_path_and_query() {
        type Pairs<'a> = &'a [(&'a [u8], &'a [u8])];
        let cases: [(Pairs, &[u8]); 4] = [
            (
                &[
                    GET,
                    (b"REQUEST_URI", b"/a%20b?x=1"),
                    (b"PATH_INFO", b"/a b"),
                ],
                b"/a%20b?x=1",
            ),
            (
                &[GET, (b"PATH_INFO", b"/p"), (b"QUERY_STRING", b"q=2")],
                b"/p?q=2",
            ),
            (&[GET, (b"PATH_INFO", b"/p"), (b"QUERY_STRING", b"")], b"/p"),
            (&[GET], b""),
        ];
        for (pairs, want) in cases {
            let pkt = packet(0, pairs);
            let h = get(pairs);
            assert_eq!(&*h.request_uri(&pkt[HEADER_SIZE..]), want);
        }
    }

    #[test]
    fn f2_need_more_until_block_complete() {
        let pkt = packet(0, &[GET, (b"PATH_INFO", b"/x")]);
        for cut in 0..pkt.len() {
            match parse_head(&pkt[..cut], &limits()).unwrap() {
                Progress::NeedMore(n) => assert_eq!(n, if cut < 4 { 4 } else { pkt.len() }),
                Progress::Done(_) => panic!("done at {cut}"),
            }
        }
        let mut with_body = pkt.clone();
        with_body.extend_from_slice(b"body bytes");
        let Progress::Done(h) = parse_head(&with_body, &limits()).unwrap() else {
            panic!()
        };
        assert_eq!(h.header.head_size(), pkt.len());
    }

    #[test]
    fn f4_modifiers() {
        let pkt = packet(5, &[GET]);
        assert_eq!(
            parse_head(&pkt, &limits()).unwrap_err(),
            ProtocolError::UnsupportedModifier(5)
        );
        // Refused from the header alone.
        assert_eq!(parse_head(&pkt[..4], &limits()).unwrap_err().status(), 501);
        assert!(parse_head(&packet(30, &[GET]), &limits()).is_ok());
    }

    #[test]
    fn f4_strip_script_name() {
        assert_eq!(strip_script_name(b"/app/x", b"/app"), Some((4, 4)));
        assert_eq!(strip_script_name(b"/app", b"/app"), Some((4, 4)));
        assert_eq!(strip_script_name(b"/app/x", b"/app/"), Some((4, 4)));
        assert_eq!(strip_script_name(b"/application", b"/app"), None);
        assert_eq!(strip_script_name(b"/other", b"/app"), None);
        assert_eq!(strip_script_name(b"/x", b""), None);
    }

    #[test]
    fn v2_names_and_values() {
        assert_eq!(parse(&[GET, (b"BAD KEY", b"x")]).unwrap_err().status(), 400);
        assert_eq!(parse(&[GET, (b"K\x01", b"x")]).unwrap_err().status(), 400);
        assert_eq!(
            parse(&[GET, (b"HTTP_X", b"a\r\nb")]).unwrap_err().status(),
            400
        );
        assert_eq!(
            parse(&[GET, (b"HTTP_X", b"a\0b")]).unwrap_err().status(),
            400
        );
        assert_eq!(
            parse(&[GET, (b"PATH_INFO", b"/a\nb")])
                .unwrap_err()
                .status(),
            400
        );
        // Other vars may carry anything.
        assert!(parse(&[GET, (b"DOCUMENT_ROOT", b"a\nb")]).is_ok());
    }

    /// The value of the copy of `name` that counts, as the environ sees it.
    fn counting<'b>(h: &Head, block: &'b [u8], name: &[u8]) -> Vec<&'b [u8]> {
        h.vars
            .iter()
            .filter(|v| !v.shadowed && slice(block, v.raw.key) == name)
            .map(|v| slice(block, v.raw.value))
            .collect()
    }

    #[test]
    fn v3_client_headers_joined_in_order() {
        let pkt_pairs: &[(&[u8], &[u8])] = &[
            GET,
            (b"HTTP_ACCEPT", b"a"),
            (b"HTTP_COOKIE", b"c=1"),
            (b"HTTP_ACCEPT", b"b"),
            (b"X_OTHER", b"1"),
            (b"HTTP_ACCEPT", b"c"),
            (b"X_OTHER", b"2"),
        ];
        let h = get(pkt_pairs);
        let first = &h.vars[1];
        assert!(!first.shadowed);
        assert_eq!(first.next_repeat, 3);
        assert_eq!(h.vars[3].next_repeat, 5);
        assert!(h.vars[3].shadowed && h.vars[5].shadowed);
        assert!(!h.vars[3].superseded && !h.vars[5].superseded);
        assert_eq!(h.vars[5].next_repeat, NONE);
        assert!(h.vars[4].superseded && !h.vars[6].shadowed);
    }

    #[test]
    fn v3_last_one_wins_for_every_var_a_client_cannot_repeat() {
        // The idioms: `include uwsgi_params;` then `uwsgi_param NAME value;`.
        for name in [
            &b"HTTPS"[..],
            b"REMOTE_ADDR",
            b"SERVER_NAME",
            b"SERVER_PORT",
            b"SCRIPT_NAME",
            b"PATH_INFO",
            b"REQUEST_METHOD",
            b"REQUEST_SCHEME",
            b"DOCUMENT_ROOT",
            b"HTTP_HOST",
            b"HTTP_AUTHORIZATION",
            b"HTTP_IF_NONE_MATCH",
            b"HTTP_PROXY_AUTHORIZATION",
        ] {
            let pairs: &[(&[u8], &[u8])] =
                &[GET, (name, b"POST"), (b"HTTP_X", b"1"), (name, b"PUT")];
            let pkt = packet(0, pairs);
            let h = get(pairs);
            let block = &pkt[HEADER_SIZE..];
            assert_eq!(counting(&h, block, name), [b"PUT"], "{name:?}");
            assert!(h.vars[1].superseded && !h.vars[3].shadowed, "{name:?}");
        }
        // Decisions read the same copy as the environ.
        let pairs: &[(&[u8], &[u8])] = &[
            (b"REQUEST_METHOD", b"GET"),
            (b"HTTPS", b"off"),
            (b"REQUEST_URI", b"/a"),
            (b"REQUEST_METHOD", b"HEAD"),
            (b"HTTPS", b"on"),
            (b"REQUEST_URI", b"/b"),
        ];
        let pkt = packet(0, pairs);
        let block = &pkt[HEADER_SIZE..];
        let h = get(pairs);
        assert!(h.is_head(block));
        assert_eq!(h.control_value(block, Control::Https), Some(&b"on"[..]));
        assert_eq!(&*h.request_uri(block), b"/b");
    }

    #[test]
    fn v3_a_repeat_with_the_same_value_collapses() {
        // TLS termination: the stock params send `HTTPS $https`, then `uwsgi_param HTTPS on`.
        let pairs: &[(&[u8], &[u8])] = &[
            GET,
            (b"HTTPS", b"on"),
            (b"HTTP_ACCEPT", b"a"),
            (b"HTTPS", b"on"),
            (b"HTTP_ACCEPT", b"a"),
            (b"HTTP_ACCEPT", b"b"),
            (b"HTTP_ACCEPT", b"b"),
            (b"CONTENT_LENGTH", b"3"),
            (b"CONTENT_LENGTH", b"3"),
        ];
        let pkt = packet(0, pairs);
        let block = &pkt[HEADER_SIZE..];
        let h = get(pairs);
        assert!(!h.vars[1].shadowed && h.vars[3].superseded);
        assert_eq!(h.control[Control::Https as usize], 1);
        // The second `a` collapses, `b` joins, the second `b` collapses.
        assert!(h.vars[4].superseded && !h.vars[5].superseded && h.vars[6].superseded);
        assert_eq!(h.vars[2].next_repeat, 5);
        assert_eq!(h.vars[5].next_repeat, NONE);
        assert_eq!(counting(&h, block, b"HTTP_ACCEPT"), [b"a"]);
        assert_eq!(h.content_length, 3);
    }

    #[test]
    fn v3_content_length_with_two_values_is_refused() {
        let err = parse(&[GET, (b"CONTENT_LENGTH", b"3"), (b"CONTENT_LENGTH", b"30")]).unwrap_err();
        assert_eq!(err.status(), 400);
        assert!(err.to_string().contains("CONTENT_LENGTH"), "{err}");
        // Empty and absent both mean 0, but an empty one beside a length is still two values.
        assert_eq!(
            parse(&[GET, (b"CONTENT_LENGTH", b""), (b"CONTENT_LENGTH", b"4")])
                .unwrap_err()
                .status(),
            400
        );
        // A repeated client Content-Length header is not the framing: the last one wins.
        let h = get(&[
            GET,
            (b"HTTP_CONTENT_LENGTH", b"1"),
            (b"HTTP_CONTENT_LENGTH", b"2"),
        ]);
        assert!(h.vars[1].superseded);
    }

    #[test]
    fn v3_repeats_past_the_inline_list() {
        let names: Vec<Vec<u8>> = (0..40).map(|i| format!("HTTP_X{i}").into_bytes()).collect();
        let mut pairs: Vec<(&[u8], &[u8])> = vec![GET];
        pairs.extend(names.iter().map(|n| (n.as_slice(), &b"a"[..])));
        pairs.push((b"HTTP_X0", b"b"));
        pairs.push((b"HTTP_X39", b"c"));
        pairs.push((b"OTHER", b"1"));
        pairs.push((b"OTHER", b"2"));
        let h = get(&pairs);
        assert_eq!(h.vars[1].next_repeat, 41);
        assert_eq!(h.vars[40].next_repeat, 42);
        assert!(h.vars[41].shadowed && h.vars[42].shadowed);
        assert!(h.vars[43].superseded && !h.vars[44].shadowed);
    }

    #[test]
    fn v4_limits() {
        let long = vec![b'a'; 5000];
        let err = parse(&[GET, (b"REQUEST_URI", &long)]).unwrap_err();
        assert_eq!(err.status(), 414);
        let field = vec![b'a'; 8190];
        assert_eq!(
            parse(&[GET, (b"HTTP_X", &field)]).unwrap_err().status(),
            431
        );
        assert!(parse(&[GET, (b"HTTP_X", &field[..8186])]).is_ok());
        let names: Vec<Vec<u8>> = (0..101)
            .map(|i| format!("HTTP_X{i}").into_bytes())
            .collect();
        let mut pairs: Vec<(&[u8], &[u8])> = vec![GET];
        pairs.extend(names.iter().map(|n| (n.as_slice(), &b"v"[..])));
        assert_eq!(parse(&pairs).unwrap_err().status(), 431);
        // 0 means unlimited.
        let pkt = packet(0, &pairs);
        let open = Limits {
            request_line: 0,
            fields: 0,
            field_size: 0,
        };
        assert!(parse_head(&pkt, &open).is_ok());
        let many: Vec<Vec<u8>> = (0..1001).map(|i| format!("V{i}").into_bytes()).collect();
        let mut pairs: Vec<(&[u8], &[u8])> = vec![GET];
        pairs.extend(many.iter().map(|n| (n.as_slice(), &b""[..])));
        let pkt = packet(0, &pairs[..1000]);
        assert!(parse_head(&pkt, &open).is_ok());
        let pkt = packet(0, &pairs);
        assert_eq!(parse_head(&pkt, &open).unwrap_err().status(), 431);
    }

    #[test]
    fn v5_content_length() {
        assert_eq!(content_length(None), Ok(0));
        assert_eq!(content_length(Some(b"")), Ok(0));
        assert_eq!(content_length(Some(b"0")), Ok(0));
        assert_eq!(content_length(Some(b"0012")), Ok(12));
        assert_eq!(
            content_length(Some(b"9223372036854775807")),
            Ok(i64::MAX as u64)
        );
        for bad in [
            &b"-1"[..],
            b"+1",
            b" 1",
            b"1 ",
            b"1_0",
            b"0x10",
            b"1e3",
            b"12345678901234567890",
        ] {
            assert_eq!(
                content_length(Some(bad)).unwrap_err().status(),
                400,
                "{bad:?}"
            );
        }
        assert_eq!(
            content_length(Some(b"9999999999999999999"))
                .unwrap_err()
                .status(),
            413
        );
        assert_eq!(get(&[GET, (b"CONTENT_LENGTH", b"25")]).content_length, 25);
    }

    #[test]
    fn v6_no_method_is_served_as_get() {
        let empty = packet(0, &[]);
        let Progress::Done(h) = parse_head(&empty, &limits()).unwrap() else {
            panic!()
        };
        assert!(!h.has(Control::RequestMethod));
        assert_eq!(h.method(&empty[HEADER_SIZE..]), b"GET");
        let pairs: &[(&[u8], &[u8])] = &[(b"PATH_INFO", b"/")];
        let pkt = packet(0, pairs);
        let h = get(pairs);
        assert_eq!(h.method(&pkt[HEADER_SIZE..]), b"GET");
        assert!(!h.is_head(&pkt[HEADER_SIZE..]));
        // One that is sent must be a token.
        assert_eq!(
            parse(&[(b"REQUEST_METHOD", b"GE T")]).unwrap_err().status(),
            400
        );
        assert_eq!(
            parse(&[(b"REQUEST_METHOD", b"")]).unwrap_err().status(),
            400
        );
    }

    #[test]
    fn e1_kinds() {
        assert_eq!(Kind::of(b"HTTP_TRANSFER_ENCODING"), Kind::HiddenHttp);
        assert_eq!(Kind::of(b"HTTP_CONTENT_LENGTH"), Kind::HiddenHttp);
        assert_eq!(Kind::of(b"HTTP_HOST"), Kind::Http);
        assert_eq!(Kind::of(b"wsgi.input"), Kind::Reserved);
        assert_eq!(Kind::of(b"gunicorn.socket"), Kind::Reserved);
        assert_eq!(Kind::of(b"UWSGI_SCRIPT"), Kind::Other);
        assert_eq!(Kind::of(b"PATH_INFO"), Kind::Control(Control::PathInfo));
    }
}
