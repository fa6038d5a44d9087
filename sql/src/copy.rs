//! The data of `COPY … FROM STDIN`: PostgreSQL's text and CSV formats split into fields.

use freshet_common::{PgError, SqlState};

use crate::statement::{CopyFormat, CopyFrom};

/// One row's fields; `None` is NULL.
pub type CopyRow = Vec<Option<String>>;

/// Splits `data` (the whole COPY stream) into rows of fields, each row having exactly
/// `width` fields.
pub fn parse_copy(data: &[u8], opts: &CopyFrom, width: usize) -> Result<Vec<CopyRow>, PgError> {
    let text = std::str::from_utf8(data).map_err(|e| {
        PgError::new(
            SqlState::CHARACTER_NOT_IN_REPERTOIRE,
            format!("invalid byte sequence for encoding \"UTF8\": {e}"),
        )
    })?;
    let rows = match opts.format {
        CopyFormat::Text => parse_text(text, opts)?,
        CopyFormat::Csv => parse_csv(text, opts)?,
    };
    for (i, r) in rows.iter().enumerate() {
        if r.len() != width {
            let line = i + 1 + usize::from(opts.header);
            let msg = if r.len() < width {
                "missing data for a column"
            } else {
                "extra data after last expected column"
            };
            return Err(PgError::new(
                SqlState::BAD_COPY_FILE_FORMAT,
                format!("{msg} (COPY line {line})"),
            ));
        }
    }
    Ok(rows)
}

fn parse_text(text: &str, opts: &CopyFrom) -> Result<Vec<CopyRow>, PgError> {
    let mut rows = Vec::new();
    let text = text.strip_suffix('\n').unwrap_or(text);
    if text.is_empty() {
        return Ok(rows);
    }
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line == "\\." {
            break;
        }
        let mut row = Vec::new();
        for raw in line.split(opts.delimiter) {
            if raw == opts.null {
                row.push(None);
            } else {
                row.push(Some(unescape(raw)?));
            }
        }
        rows.push(row);
    }
    Ok(rows)
}

/// Text-format backslash escapes.
fn unescape(raw: &str) -> Result<String, PgError> {
    if !raw.contains('\\') {
        return Ok(raw.to_owned());
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('v') => out.push('\u{b}'),
            Some(d @ '0'..='7') => {
                let mut n = d.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    match chars.peek().and_then(|c| c.to_digit(8)) {
                        Some(x) => {
                            n = n * 8 + x;
                            chars.next();
                        }
                        None => break,
                    }
                }
                out.push(char::from_u32(n).unwrap_or('\u{fffd}'));
            }
            Some('x') => {
                let mut n = 0;
                let mut digits = 0;
                while digits < 2 {
                    match chars.peek().and_then(|c| c.to_digit(16)) {
                        Some(x) => {
                            n = n * 16 + x;
                            chars.next();
                            digits += 1;
                        }
                        None => break,
                    }
                }
                if digits == 0 {
                    out.push('x');
                } else {
                    out.push(char::from_u32(n).unwrap_or('\u{fffd}'));
                }
            }
            Some(other) => out.push(other),
            None => {
                return Err(PgError::new(
                    SqlState::BAD_COPY_FILE_FORMAT,
                    "end-of-copy marker corrupt",
                ))
            }
        }
    }
    Ok(out)
}

fn parse_csv(text: &str, opts: &CopyFrom) -> Result<Vec<CopyRow>, PgError> {
    let mut rows = Vec::new();
    let mut row: CopyRow = Vec::new();
    let mut field = String::new();
    let mut quoted = false; // the current field had quotes
    let mut in_quotes = false;
    let mut started = false; // anything seen on the current line
    let mut chars = text.chars().peekable();
    let q = opts.quote;
    let finish_field = |row: &mut CopyRow, field: &mut String, quoted: &mut bool| {
        let value = std::mem::take(field);
        if !*quoted && value == opts.null {
            row.push(None);
        } else {
            row.push(Some(value));
        }
        *quoted = false;
    };
    while let Some(c) = chars.next() {
        if in_quotes {
            if c == q {
                if chars.peek() == Some(&q) {
                    field.push(q);
                    chars.next();
                } else {
                    in_quotes = false;
                }
            } else {
                field.push(c);
            }
            continue;
        }
        match c {
            c if c == q => {
                in_quotes = true;
                quoted = true;
                started = true;
            }
            c if c == opts.delimiter => {
                finish_field(&mut row, &mut field, &mut quoted);
                started = true;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                if started || !field.is_empty() {
                    finish_field(&mut row, &mut field, &mut quoted);
                    if !(row.len() == 1 && row[0].as_deref() == Some("\\.")) {
                        rows.push(std::mem::take(&mut row));
                    }
                }
                row.clear();
                started = false;
            }
            c => {
                field.push(c);
                started = true;
            }
        }
    }
    if in_quotes {
        return Err(PgError::new(
            SqlState::BAD_COPY_FILE_FORMAT,
            "unterminated CSV quoted field",
        ));
    }
    if started || !field.is_empty() {
        finish_field(&mut row, &mut field, &mut quoted);
        if !(row.len() == 1 && row[0].as_deref() == Some("\\.")) {
            rows.push(row);
        }
    }
    if opts.header && !rows.is_empty() {
        rows.remove(0);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(format: CopyFormat) -> CopyFrom {
        let csv = format == CopyFormat::Csv;
        CopyFrom {
            table: "t".into(),
            columns: vec![],
            format,
            delimiter: if csv { ',' } else { '\t' },
            null: if csv { String::new() } else { "\\N".into() },
            header: false,
            quote: '"',
        }
    }

    #[test]
    fn text_format() {
        let rows = parse_copy(
            b"1\tab\\tc\t\\N\n2\t\\\\x\t\n\\.\n",
            &opts(CopyFormat::Text),
            3,
        )
        .unwrap();
        assert_eq!(
            rows,
            vec![
                vec![Some("1".into()), Some("ab\tc".into()), None],
                vec![Some("2".into()), Some("\\x".into()), Some(String::new())],
            ]
        );
    }

    #[test]
    fn csv_format() {
        let mut o = opts(CopyFormat::Csv);
        o.header = true;
        let rows = parse_copy(
            b"a,b,c\r\n1,\"x,\"\"y\"\"\",\n2,\"\",\"multi\nline\"\n",
            &o,
            3,
        )
        .unwrap();
        assert_eq!(
            rows,
            vec![
                vec![Some("1".into()), Some("x,\"y\"".into()), None],
                vec![
                    Some("2".into()),
                    Some(String::new()),
                    Some("multi\nline".into())
                ],
            ]
        );
    }

    #[test]
    fn wrong_width_is_an_error() {
        let e = parse_copy(b"1\t2\n", &opts(CopyFormat::Text), 3).unwrap_err();
        assert_eq!(e.sqlstate, SqlState::BAD_COPY_FILE_FORMAT);
        assert!(e.message.contains("missing data"), "{}", e.message);
    }
}
