//! The uwsgi parser on arbitrary bytes: never a panic, and the verdict does not depend on where
//! the stream is cut (F2, X4).
#![no_main]

use _native::vars::{parse_head, Limits, Progress};
use libfuzzer_sys::fuzz_target;

fn verdict(buf: &[u8], limits: &Limits) -> Result<(usize, u64, usize), u16> {
    match parse_head(buf, limits) {
        Ok(Progress::Done(h)) => Ok((h.header.head_size(), h.content_length, h.vars.len())),
        Ok(Progress::NeedMore(n)) => Ok((n, u64::MAX, 0)),
        Err(e) => Err(e.status()),
    }
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        request_line: 4094,
        fields: 100,
        field_size: 8190,
    };
    let whole = verdict(data, &limits);
    if let Some((&cut, rest)) = data.split_first() {
        let cut = usize::from(cut).min(rest.len());
        let part = &data[..cut];
        match parse_head(part, &limits) {
            Ok(Progress::NeedMore(n)) => assert!(n > part.len()),
            _ => assert_eq!(verdict(part, &limits), whole),
        }
    }
});
