//! `COPY`: the statement's options bound as PostgreSQL checks them, and the data of
//! `COPY … FROM STDIN` (PostgreSQL's text and CSV formats) split into fields.

use datafusion::sql::sqlparser::ast;
use freshet_common::{PgError, SqlState};

use crate::words::object_name;

/// A `COPY … FROM STDIN`: where the rows go and how they are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyFrom {
    pub table: String,
    /// The listed columns; empty for all, in table order.
    pub columns: Vec<String>,
    pub options: CopyOptions,
}

/// A `COPY table [(columns)] TO STDOUT` or `COPY (query) TO STDOUT`: the rows of `query`,
/// written in `options`' format.
#[derive(Debug, Clone)]
pub struct CopyTo {
    /// The query whose rows are copied (`SELECT columns FROM table` for the table form).
    pub query: Box<ast::Statement>,
    /// The relation named by the table form.
    pub relation: Option<String>,
    pub options: CopyOptions,
}

/// How COPY data is written: PostgreSQL's COPY options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyOptions {
    pub format: CopyFormat,
    pub delimiter: char,
    /// The text that stands for NULL.
    pub null: String,
    /// The first line is a header: skipped when reading, the column names when writing.
    pub header: bool,
    /// CSV quote character.
    pub quote: char,
    /// CSV: the character that escapes a quote inside a quoted field.
    pub escape: char,
    /// CSV, COPY TO: columns whose non-NULL values are always quoted.
    pub force_quote: Vec<String>,
}

impl CopyOptions {
    /// PostgreSQL's defaults for `format`.
    pub fn new(format: CopyFormat) -> CopyOptions {
        let csv = format == CopyFormat::Csv;
        CopyOptions {
            format,
            delimiter: if csv { ',' } else { '\t' },
            null: if csv { String::new() } else { "\\N".to_owned() },
            header: false,
            quote: '"',
            escape: '"',
            force_quote: Vec::new(),
        }
    }
}

/// COPY data formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyFormat {
    Text,
    Csv,
    /// PostgreSQL's binary COPY format (PGCOPY).
    Binary,
}

/// A bound COPY.
#[derive(Debug, Clone)]
pub enum CopyStatement {
    From(CopyFrom),
    To(Box<CopyTo>),
}

/// Binds a parsed COPY: `FROM STDIN` into a table, or `TO STDOUT` from a table or a query.
pub fn bind(
    source: ast::CopySource,
    to: bool,
    target: ast::CopyTarget,
    options: Vec<ast::CopyOption>,
    legacy: Vec<ast::CopyLegacyOption>,
) -> Result<CopyStatement, PgError> {
    match (&target, to) {
        (ast::CopyTarget::Stdin, false) | (ast::CopyTarget::Stdout, true) => {}
        (_, false) => {
            return Err(PgError::not_supported(
                "COPY FROM a file or program (use COPY … FROM STDIN, e.g. psql's \\copy)",
            ))
        }
        (_, true) => {
            return Err(PgError::not_supported(
                "COPY TO a file or program (use COPY … TO STDOUT, e.g. psql's \\copy)",
            ))
        }
    }
    let options = bind_options(options, legacy, to)?;
    match source {
        ast::CopySource::Table {
            table_name,
            columns,
        } if to => {
            let list = if columns.is_empty() {
                "*".to_owned()
            } else {
                columns
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let mut query = crate::ast_parse::parse(&format!("SELECT {list} FROM {table_name}"))?;
            let query = query
                .pop()
                .ok_or_else(|| PgError::internal("COPY's query did not parse"))?;
            Ok(CopyStatement::To(Box::new(CopyTo {
                query: Box::new(query),
                relation: Some(object_name(&table_name)?),
                options,
            })))
        }
        ast::CopySource::Table {
            table_name,
            columns,
        } => Ok(CopyStatement::From(CopyFrom {
                table: object_name(&table_name)?,
                columns: columns.iter().map(|c| c.value.clone()).collect(),
                options,
            })),
        ast::CopySource::Query(query) => Ok(CopyStatement::To(Box::new(CopyTo {
            query: Box::new(ast::Statement::Query(query)),
            relation: None,
            options,
        }))),
    }
}

/// COPY's options, checked as PostgreSQL checks them (with its messages and SQLSTATEs).
fn bind_options(
    options: Vec<ast::CopyOption>,
    legacy: Vec<ast::CopyLegacyOption>,
    to: bool,
) -> Result<CopyOptions, PgError> {
    let mut format = CopyFormat::Text;
    let (mut delimiter, mut null, mut header) = (None, None, None);
    let (mut quote, mut escape, mut force_quote) = (None, None, None);
    for o in options {
        match o {
            ast::CopyOption::Format(f) => {
                format = match f.value.to_ascii_lowercase().as_str() {
                    "text" => CopyFormat::Text,
                    "csv" => CopyFormat::Csv,
                    "binary" => CopyFormat::Binary,
                    other => {
                        return Err(PgError::new(
                            SqlState::INVALID_PARAMETER_VALUE,
                            format!("COPY format \"{other}\" not recognized"),
                        ))
                    }
                }
            }
            ast::CopyOption::Delimiter(c) => delimiter = Some(c),
            ast::CopyOption::Null(n) => null = Some(n),
            ast::CopyOption::Header(h) => header = Some(h),
            ast::CopyOption::Quote(q) => quote = Some(q),
            ast::CopyOption::Escape(e) => escape = Some(e),
            ast::CopyOption::ForceQuote(cols) => force_quote = Some(cols),
            ast::CopyOption::Encoding(e)
                if e.eq_ignore_ascii_case("utf8") || e.eq_ignore_ascii_case("utf-8") => {}
            other => return Err(PgError::not_supported(format!("COPY option {other}"))),
        }
    }
    for o in legacy {
        match o {
            ast::CopyLegacyOption::Binary => format = CopyFormat::Binary,
            ast::CopyLegacyOption::Csv(csv) => {
                format = CopyFormat::Csv;
                for c in csv {
                    match c {
                        ast::CopyLegacyCsvOption::Header => header = Some(true),
                        ast::CopyLegacyCsvOption::Quote(q) => quote = Some(q),
                        ast::CopyLegacyCsvOption::Escape(e) => escape = Some(e),
                        ast::CopyLegacyCsvOption::ForceQuote(cols) => force_quote = Some(cols),
                        other => {
                            return Err(PgError::not_supported(format!("COPY option {other}")))
                        }
                    }
                }
            }
            ast::CopyLegacyOption::Delimiter(c) => delimiter = Some(c),
            ast::CopyLegacyOption::Null(n) => null = Some(n),
            ast::CopyLegacyOption::Header => header = Some(true),
            other => return Err(PgError::not_supported(format!("COPY option {other}"))),
        }
    }
    let mut opts = CopyOptions::new(format);
    let csv = format == CopyFormat::Csv;
    if format == CopyFormat::Binary {
        for (given, what, state) in [
            (delimiter.is_some(), "DELIMITER", SqlState::SYNTAX_ERROR),
            (null.is_some(), "NULL", SqlState::SYNTAX_ERROR),
            (
                header == Some(true),
                "HEADER",
                SqlState::FEATURE_NOT_SUPPORTED,
            ),
        ] {
            if given {
                return Err(PgError::new(
                    state,
                    format!("cannot specify {what} in BINARY mode"),
                ));
            }
        }
    }
    let only_csv = |given: bool, what: &str| {
        if given && !csv {
            return Err(PgError::not_supported(format!(
                "COPY {what} available only in CSV mode"
            )));
        }
        Ok(())
    };
    only_csv(quote.is_some(), "quote")?;
    only_csv(escape.is_some(), "escape")?;
    only_csv(force_quote.is_some(), "force quote")?;
    if force_quote.is_some() && !to {
        return Err(PgError::not_supported(
            "COPY force quote only available using COPY TO",
        ));
    }
    if let Some(d) = delimiter {
        opts.delimiter = d;
    }
    if let Some(n) = null {
        opts.null = n;
    }
    opts.header = header.unwrap_or(false);
    if let Some(q) = quote {
        opts.quote = q;
        opts.escape = q;
    }
    if let Some(e) = escape {
        opts.escape = e;
    }
    opts.force_quote = force_quote
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.value)
        .collect();
    check_characters(&opts)?;
    Ok(opts)
}

/// PostgreSQL's checks of the delimiter, quote and NULL string.
fn check_characters(o: &CopyOptions) -> Result<(), PgError> {
    if o.format == CopyFormat::Binary {
        return Ok(());
    }
    let invalid = |m: String| Err(PgError::new(SqlState::INVALID_PARAMETER_VALUE, m));
    for (c, what) in [
        (o.delimiter, "delimiter"),
        (o.quote, "quote"),
        (o.escape, "escape"),
    ] {
        if !c.is_ascii() {
            return Err(PgError::not_supported(format!(
                "COPY {what} must be a single one-byte character"
            )));
        }
    }
    if matches!(o.delimiter, '\n' | '\r') {
        return invalid("COPY delimiter cannot be newline or carriage return".into());
    }
    if o.null.contains(['\n', '\r']) {
        return invalid("COPY null representation cannot use newline or carriage return".into());
    }
    if o.format == CopyFormat::Text
        && (o.delimiter == '\\' || o.delimiter == '.' || o.delimiter.is_ascii_alphanumeric())
    {
        return invalid(format!("COPY delimiter cannot be \"{}\"", o.delimiter));
    }
    if o.format == CopyFormat::Csv {
        if o.delimiter == o.quote {
            return invalid("COPY delimiter and quote must be different".into());
        }
        if o.null.contains(o.quote) {
            return Err(PgError::not_supported(
                "CSV quote character must not appear in the NULL specification",
            ));
        }
    }
    if o.null.contains(o.delimiter) {
        return Err(PgError::not_supported(
            "COPY delimiter must not appear in the NULL specification",
        ));
    }
    Ok(())
}

/// One row's fields; `None` is NULL.
pub type CopyRow = Vec<Option<String>>;

/// Splits `data` (the whole COPY stream) into rows of fields, each row having exactly
/// `width` fields.
pub fn parse_copy(data: &[u8], opts: &CopyOptions, width: usize) -> Result<Vec<CopyRow>, PgError> {
    let text = std::str::from_utf8(data).map_err(|e| {
        PgError::new(
            SqlState::CHARACTER_NOT_IN_REPERTOIRE,
            format!("invalid byte sequence for encoding \"UTF8\": {e}"),
        )
    })?;
    let rows = match opts.format {
        CopyFormat::Text => parse_text(text, opts)?,
        CopyFormat::Csv => parse_csv(text, opts)?,
        CopyFormat::Binary => return Err(PgError::internal("binary COPY data read as text")),
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

fn parse_text(text: &str, opts: &CopyOptions) -> Result<Vec<CopyRow>, PgError> {
    let mut rows = Vec::new();
    let text = text.strip_suffix('\n').unwrap_or(text);
    if text.is_empty() {
        return Ok(rows);
    }
    for line in text.split('\n').skip(usize::from(opts.header)) {
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

fn parse_csv(text: &str, opts: &CopyOptions) -> Result<Vec<CopyRow>, PgError> {
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
            if c == opts.escape && c != q && matches!(chars.peek(), Some(&n) if n == q || n == c) {
                field.extend(chars.next());
            } else if c == q {
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

    fn opts(format: CopyFormat) -> CopyOptions {
        CopyOptions::new(format)
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

    fn bound(sql: &str) -> Result<CopyStatement, PgError> {
        let mut stmts = crate::ast_parse::parse(sql)?;
        let ast::Statement::Copy {
            source,
            to,
            target,
            options,
            legacy_options,
            ..
        } = stmts.remove(0)
        else {
            panic!("not a COPY: {sql}")
        };
        bind(source, to, target, options, legacy_options)
    }

    #[test]
    fn binds_copy_to_and_legacy_options() {
        let Ok(CopyStatement::To(c)) = bound("COPY public.t (a, \"B c\") TO STDOUT CSV HEADER")
        else {
            panic!("not a COPY TO")
        };
        assert_eq!(c.query.to_string(), "SELECT a, \"B c\" FROM public.t");
        assert_eq!(c.relation.as_deref(), Some("t"));
        assert_eq!(
            (c.options.format, c.options.header),
            (CopyFormat::Csv, true)
        );
        let Ok(CopyStatement::From(c)) = bound("COPY t FROM STDIN WITH CSV HEADER QUOTE '|'")
        else {
            panic!("not a COPY FROM")
        };
        assert_eq!(
            (c.options.header, c.options.quote, c.options.escape),
            (true, '|', '|')
        );
        let Ok(CopyStatement::To(c)) = bound("COPY (SELECT 1) TO STDOUT (FORMAT binary)") else {
            panic!("not a COPY TO")
        };
        assert_eq!((c.relation, c.options.format), (None, CopyFormat::Binary));
        for (sql, state) in [
            (
                "COPY t TO STDOUT (FORMAT binary, HEADER)",
                SqlState::FEATURE_NOT_SUPPORTED,
            ),
            (
                "COPY t TO STDOUT (FORMAT binary, NULL 'x')",
                SqlState::SYNTAX_ERROR,
            ),
            (
                "COPY t TO STDOUT (FORMAT json)",
                SqlState::INVALID_PARAMETER_VALUE,
            ),
            (
                "COPY t TO STDOUT (QUOTE '|')",
                SqlState::FEATURE_NOT_SUPPORTED,
            ),
            (
                "COPY t FROM STDIN (FORMAT csv, FORCE_QUOTE (a))",
                SqlState::FEATURE_NOT_SUPPORTED,
            ),
            ("COPY t TO '/tmp/x'", SqlState::FEATURE_NOT_SUPPORTED),
            (
                "COPY t TO STDOUT (DELIMITER 'a')",
                SqlState::INVALID_PARAMETER_VALUE,
            ),
            (
                "COPY t TO STDOUT (FORMAT csv, NULL 'a,b')",
                SqlState::FEATURE_NOT_SUPPORTED,
            ),
        ] {
            assert_eq!(bound(sql).unwrap_err().sqlstate, state, "{sql}");
        }
    }

    #[test]
    fn text_header_and_csv_escape() {
        let mut o = opts(CopyFormat::Text);
        o.header = true;
        let rows = parse_copy(b"a\tb\n1\t2\n", &o, 2).unwrap();
        assert_eq!(rows, vec![vec![Some("1".into()), Some("2".into())]]);
        let mut o = opts(CopyFormat::Csv);
        o.escape = '\\';
        let rows = parse_copy(b"\"a\\\"b\\\\\",c\n", &o, 2).unwrap();
        assert_eq!(rows, vec![vec![Some("a\"b\\".into()), Some("c".into())]]);
    }
}
