//! The 22 TPC-H queries as the specification prints them (the templates `tpchgen` ships), with
//! the specification's validation parameters substituted, ready to be a materialized view's
//! definition in freshet and in PostgreSQL.

use tpchgen::q_and_a::queries;

/// Query `n`'s validation parameters, `:1` first (TPC-H specification, 2.4.n.3).
fn parameters(n: i32, sf: f64) -> Vec<String> {
    let p: &[&str] = match n {
        1 => &["90"],
        2 => &["15", "BRASS", "EUROPE"],
        3 => &["BUILDING", "1995-03-15"],
        4 => &["1993-07-01"],
        5 => &["ASIA", "1994-01-01"],
        6 => &["1994-01-01", "0.06", "24"],
        7 => &["FRANCE", "GERMANY"],
        8 => &["BRAZIL", "AMERICA", "ECONOMY ANODIZED STEEL"],
        9 => &["green"],
        10 => &["1993-10-01"],
        11 => return vec!["GERMANY".into(), fraction(sf)],
        12 => &["MAIL", "SHIP", "1994-01-01"],
        13 => &["special", "requests"],
        14 => &["1995-09-01"],
        15 => &["1996-01-01"],
        16 => &[
            "Brand#45",
            "MEDIUM POLISHED",
            "49",
            "14",
            "23",
            "45",
            "19",
            "3",
            "36",
            "9",
        ],
        17 => &["Brand#23", "MED BOX"],
        18 => &["300"],
        19 => &["Brand#12", "Brand#23", "Brand#34", "1", "10", "20"],
        20 => &["forest", "1994-01-01", "CANADA"],
        21 => &["SAUDI ARABIA"],
        22 => &["13", "31", "23", "29", "30", "18", "17"],
        _ => &[],
    };
    p.iter().map(|s| (*s).to_owned()).collect()
}

/// Q11's FRACTION, 0.0001 / SF, as a decimal literal.
fn fraction(sf: f64) -> String {
    let s = format!("{:.12}", 0.0001 / sf);
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// One query as the statements that define it: any plain views it reads (Q15's `revenue0`),
/// then the query itself, without a trailing semicolon.
pub struct Query {
    pub number: i32,
    pub views: Vec<String>,
    pub select: String,
}

impl Query {
    /// The materialized view's name.
    pub fn name(&self) -> String {
        format!("q{}", self.number)
    }
}

/// Query `n` (1..=22) with its validation parameters at scale factor `sf`.
pub fn query(n: i32, sf: f64) -> Query {
    let mut text = queries::query(n)
        .unwrap_or_default()
        .replace(":s", "0")
        // `interval '90' day (3)`: the leading field's precision is SQL-92 syntax that
        // PostgreSQL does not take; the interval is the same without it.
        .replace(" day (3)", " day");
    // Highest first, so that `:1` does not eat the start of `:10`.
    for (i, value) in parameters(n, sf).iter().enumerate().rev() {
        text = text.replace(&format!(":{}", i + 1), value);
    }
    let mut statements: Vec<String> = text
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty() && !s.starts_with("drop view"))
        .map(str::to_owned)
        .collect();
    let select = statements.pop().unwrap_or_default();
    Query {
        number: n,
        views: statements,
        select,
    }
}

/// All 22.
pub fn all(sf: f64) -> Vec<Query> {
    (1..=22).map(|n| query(n, sf)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_parameter_is_substituted() {
        for q in all(0.1) {
            let text = format!("{} {}", q.views.join(" "), q.select);
            let left = text
                .as_bytes()
                .windows(2)
                .any(|w| w[0] == b':' && w[1].is_ascii_alphanumeric());
            assert!(!left, "q{}: {text}", q.number);
            assert!(!q.select.contains(';'), "q{}", q.number);
        }
        assert_eq!(query(15, 0.1).views.len(), 1);
        assert!(query(11, 0.1).select.contains("* 0.001"));
        assert!(query(16, 0.1)
            .select
            .contains("in (49, 14, 23, 45, 19, 3, 36, 9)"));
    }
}
