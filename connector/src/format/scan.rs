//! A checking scanner over one JSON text: every part is checked against the JSON grammar
//! (strings and their escapes, numbers, literals, nesting without recursion); strings are
//! checked to be UTF-8 (outside them, JSON is ASCII). The pruning pass and the one-pass
//! decoder walk messages with it, so both refuse exactly the same messages with the same words.

/// A syntax error, with a message for the error relation.
pub type ScanError = String;

/// A position in one JSON text.
pub(crate) struct Scanner<'a> {
    pub(crate) b: &'a [u8],
    pub(crate) pos: usize,
}

pub(crate) const TRUNCATED: &str = "truncated JSON object";
pub(crate) const NOT_UTF8: &str = "message is not valid UTF-8";

impl<'a> Scanner<'a> {
    /// At the start of `b`.
    pub(crate) fn new(b: &'a [u8]) -> Self {
        Scanner { b, pos: 0 }
    }

    #[inline]
    pub(crate) fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    #[inline]
    pub(crate) fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.pos += 1;
        }
    }

    pub(crate) fn err<T>(&self, what: &str) -> Result<T, ScanError> {
        if self.pos >= self.b.len() {
            Err(TRUNCATED.into())
        } else {
            Err(format!("invalid JSON at byte {}: {what}", self.pos))
        }
    }

    #[inline]
    pub(crate) fn expect(&mut self, c: u8, what: &str) -> Result<(), ScanError> {
        self.ws();
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            self.err(what)
        }
    }

    /// At a `"`: skips the string; returns whether it has escapes.
    pub(crate) fn string(&mut self) -> Result<bool, ScanError> {
        self.pos += 1;
        let mut escaped = false;
        loop {
            self.pos += plain_run(&self.b[self.pos..]);
            let Some(&c) = self.b.get(self.pos) else {
                return Err(TRUNCATED.into());
            };
            match c {
                b'"' => {
                    self.pos += 1;
                    return Ok(escaped);
                }
                b'\\' => {
                    escaped = true;
                    match self.b.get(self.pos + 1) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            self.pos += 2
                        }
                        Some(b'u') => {
                            let hex = self.b.get(self.pos + 2..self.pos + 6);
                            match hex {
                                Some(h) if h.iter().all(u8::is_ascii_hexdigit) => self.pos += 6,
                                Some(_) => return self.err("bad \\u escape"),
                                None => return Err(TRUNCATED.into()),
                            }
                        }
                        Some(_) => return self.err("bad escape"),
                        None => return Err(TRUNCATED.into()),
                    }
                }
                0x80.. => {
                    // One UTF-8 sequence, checked on its own.
                    let width = match c {
                        0xC2..=0xDF => 2,
                        0xE0..=0xEF => 3,
                        0xF0..=0xF4 => 4,
                        _ => return Err(NOT_UTF8.into()),
                    };
                    match self.b.get(self.pos..self.pos + width) {
                        Some(seq) if std::str::from_utf8(seq).is_ok() => self.pos += width,
                        _ => return Err(NOT_UTF8.into()),
                    }
                }
                _ => return self.err("control character in string"),
            }
        }
    }

    pub(crate) fn number(&mut self) -> Result<(), ScanError> {
        let digits = |s: &mut Self| {
            let start = s.pos;
            while s.peek().is_some_and(|c| c.is_ascii_digit()) {
                s.pos += 1;
            }
            s.pos > start
        };
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return self.err("bad number"),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !digits(self) {
                return self.err("bad number");
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if !digits(self) {
                return self.err("bad number");
            }
        }
        Ok(())
    }

    pub(crate) fn literal(&mut self, word: &[u8]) -> Result<(), ScanError> {
        match self.b.get(self.pos..self.pos + word.len()) {
            Some(w) if w == word => {
                self.pos += word.len();
                Ok(())
            }
            Some(_) => self.err("unexpected character"),
            None if self.b[self.pos..] == word[..self.b.len() - self.pos] => Err(TRUNCATED.into()),
            None => self.err("unexpected character"),
        }
    }

    /// One scalar value at the current position (after whitespace), or `Ok(false)` at the
    /// start of an array or object (not consumed).
    #[inline]
    pub(crate) fn scalar(&mut self) -> Result<bool, ScanError> {
        match self.peek() {
            Some(b'"') => self.string().map(|_| true),
            Some(b'-' | b'0'..=b'9') => self.number().map(|()| true),
            Some(b't') => self.literal(b"true").map(|()| true),
            Some(b'f') => self.literal(b"false").map(|()| true),
            Some(b'n') => self.literal(b"null").map(|()| true),
            Some(b'{' | b'[') => Ok(false),
            Some(_) => self.err("unexpected character"),
            None => Err(TRUNCATED.into()),
        }
    }

    /// Skips one value of any kind, checking it.
    pub(crate) fn skip_value(&mut self) -> Result<(), ScanError> {
        self.ws();
        if self.scalar()? {
            return Ok(());
        }
        // Containers, without recursion: `true` for an object on the stack.
        let mut stack: Vec<bool> = Vec::new();
        'value: loop {
            // At the start of a value.
            self.ws();
            if !self.scalar()? {
                let object = self.peek() == Some(b'{');
                self.pos += 1;
                self.ws();
                let close = if object { b'}' } else { b']' };
                if self.peek() == Some(close) {
                    self.pos += 1;
                } else {
                    if stack.len() >= MAX_DEPTH {
                        // Decoders after this one recurse per level: the message is refused
                        // here, alone, rather than exhausting their stack.
                        return self.err("JSON nested too deeply");
                    }
                    stack.push(object);
                    if object {
                        self.key()?;
                    }
                    continue 'value;
                }
            }
            // After a value: close containers until one continues.
            loop {
                let Some(&object) = stack.last() else {
                    return Ok(());
                };
                self.ws();
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        if object {
                            self.key()?;
                        }
                        continue 'value;
                    }
                    Some(b'}') if object => {
                        self.pos += 1;
                        stack.pop();
                    }
                    Some(b']') if !object => {
                        self.pos += 1;
                        stack.pop();
                    }
                    _ => return self.err("expected ',' or the end of a container"),
                }
            }
        }
    }

    /// A member's key and the colon after it.
    pub(crate) fn key(&mut self) -> Result<(usize, usize, bool), ScanError> {
        self.ws();
        if self.peek() != Some(b'"') {
            return self.err("expected a string key");
        }
        let start = self.pos;
        let escaped = self.string()?;
        let end = self.pos;
        self.expect(b':', "expected ':'")?;
        self.ws();
        Ok((start, end, escaped))
    }
}

/// The deepest nesting of arrays and objects a message may have (serde_json's limit).
pub const MAX_DEPTH: usize = 128;

/// How many bytes at the start of `b` need no attention inside a string: ASCII other than
/// `"`, `\\` and control characters.
#[inline]
fn plain_run(b: &[u8]) -> usize {
    let mut i = 0;
    #[cfg(target_arch = "x86_64")]
    {
        if b.len() >= 32 && std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            let (n, done) = unsafe { plain_run_avx2(b) };
            if done {
                return n;
            }
            i = n;
        }
        // SSE2 is part of x86_64: 16 bytes at a time.
        use std::arch::x86_64::*;
        while i + 16 <= b.len() {
            // SAFETY: 16 bytes from `i` are in bounds (checked above); unaligned load.
            let mask = unsafe {
                let v = _mm_loadu_si128(b.as_ptr().add(i).cast());
                let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
                let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
                let control = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1F)), v);
                let special = _mm_or_si128(_mm_or_si128(quote, backslash), control);
                // The sign bit of every byte: non-ASCII.
                (_mm_movemask_epi8(special) | _mm_movemask_epi8(v)) as u32
            };
            if mask != 0 {
                return i + mask.trailing_zeros() as usize;
            }
            i += 16;
        }
    }
    while let Some(chunk) = b.get(i..i + 8) {
        let w = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        if has_special(w) || w & 0x8080_8080_8080_8080 != 0 {
            break;
        }
        i += 8;
    }
    while b
        .get(i)
        .is_some_and(|&c| c >= 0x20 && c < 0x80 && c != b'"' && c != b'\\')
    {
        i += 1;
    }
    i
}

/// [`plain_run`] 32 bytes at a time: how many bytes it cleared, and whether it found the end
/// of the run (else fewer than 32 bytes are left after them).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn plain_run_avx2(b: &[u8]) -> (usize, bool) {
    use std::arch::x86_64::*;
    let mut i = 0;
    while i + 32 <= b.len() {
        // SAFETY: 32 bytes from `i` are in bounds (checked above); unaligned load.
        let v = unsafe { _mm256_loadu_si256(b.as_ptr().add(i).cast()) };
        let quote = _mm256_cmpeq_epi8(v, _mm256_set1_epi8(b'"' as i8));
        let backslash = _mm256_cmpeq_epi8(v, _mm256_set1_epi8(b'\\' as i8));
        let control = _mm256_cmpeq_epi8(_mm256_min_epu8(v, _mm256_set1_epi8(0x1F)), v);
        let special = _mm256_or_si256(_mm256_or_si256(quote, backslash), control);
        // The sign bit of every byte: non-ASCII.
        let mask = (_mm256_movemask_epi8(special) | _mm256_movemask_epi8(v)) as u32;
        if mask != 0 {
            return (i + mask.trailing_zeros() as usize, true);
        }
        i += 32;
    }
    (i, false)
}

/// Whether any of the eight bytes of `w` is `"`, `\\` or below 0x20.
#[inline]
fn has_special(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    (zero(w ^ (ONES * b'"' as u64)) | zero(w ^ (ONES * b'\\' as u64)) | below_space) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_bytes_are_found_in_words() {
        for c in 0u8..=255 {
            for at in 0..8 {
                let mut w = [b'a'; 8];
                w[at] = c;
                let want = c < 0x20 || c == b'"' || c == b'\\';
                assert_eq!(has_special(u64::from_le_bytes(w)), want, "{c} at {at}");
            }
        }
    }
}
