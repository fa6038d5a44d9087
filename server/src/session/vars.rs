//! Session variables (`SET` / `SHOW`) with PostgreSQL's names and defaults.

use std::collections::BTreeMap;

use freshet_common::{PgError, SqlState};
use freshet_sql::SetValue;

/// Defaults, by lower-case name: (name as `SHOW` prints it, value).
const DEFAULTS: &[(&str, &str)] = &[
    ("application_name", ""),
    ("block_size", "8192"),
    ("client_encoding", "UTF8"),
    ("client_min_messages", "notice"),
    ("data_checksums", "off"),
    ("datestyle", "ISO, MDY"),
    ("default_transaction_isolation", "read committed"),
    ("default_transaction_read_only", "off"),
    ("extra_float_digits", "1"),
    ("idle_in_transaction_session_timeout", "0"),
    ("in_hot_standby", "off"),
    ("integer_datetimes", "on"),
    ("intervalstyle", "postgres"),
    ("is_superuser", "on"),
    ("lc_collate", "C"),
    ("lc_ctype", "C"),
    ("lock_timeout", "0"),
    ("max_function_args", "100"),
    ("max_identifier_length", "63"),
    ("max_index_keys", "32"),
    ("row_security", "on"),
    ("search_path", "\"$user\", public"),
    ("server_encoding", "UTF8"),
    ("server_version", crate::SERVER_VERSION),
    ("server_version_num", crate::SERVER_VERSION_NUM),
    ("session_authorization", "freshet"),
    ("standard_conforming_strings", "on"),
    ("statement_timeout", "0"),
    ("synchronize_seqscans", "on"),
    ("timezone", "UTC"),
    ("transaction_isolation", "read committed"),
    ("transaction_read_only", "off"),
];

/// Variables only the server sets.
const READ_ONLY: &[&str] = &[
    "server_version",
    "server_version_num",
    "server_encoding",
    "integer_datetimes",
    "lc_collate",
    "lc_ctype",
    "max_identifier_length",
    "max_index_keys",
    "max_function_args",
    "block_size",
    "data_checksums",
    "in_hot_standby",
    "is_superuser",
];

/// The values of one session's variables.
#[derive(Debug, Default)]
pub struct SessionVars {
    overrides: BTreeMap<String, String>,
}

impl SessionVars {
    /// Sets a variable without checks (startup parameters).
    pub fn set(&mut self, name: &str, value: String) {
        self.overrides.insert(canonical(name), value);
    }

    /// Applies `SET name = value`.
    pub fn apply_set(&mut self, name: &str, value: SetValue) -> Result<(), PgError> {
        let key = canonical(name);
        if READ_ONLY.contains(&key.as_str()) {
            return Err(PgError::new(
                SqlState("55P02"),
                format!("parameter \"{name}\" cannot be changed"),
            ));
        }
        let known = DEFAULTS.iter().any(|(k, _)| *k == key);
        // Unknown dotted names are custom options in PostgreSQL; unknown plain names are errors.
        if !known && !key.contains('.') {
            return Err(unrecognized(name));
        }
        match value {
            SetValue::Default => {
                self.overrides.remove(&key);
            }
            SetValue::Value(v) => {
                let v = if key == "client_encoding" {
                    normalize_encoding(&v)?
                } else {
                    v
                };
                if key == "timezone" {
                    validate_time_zone(&v)?;
                }
                if TIMEOUTS.contains(&key.as_str()) {
                    parse_timeout(name, &v)?;
                }
                // Row locks wait until the holder finishes; no other wait is offered.
                if key == "lock_timeout" && parse_timeout(name, &v)?.is_some() {
                    return Err(PgError::not_supported("lock_timeout other than 0"));
                }
                // No row-level security policies exist, so neither value changes a result;
                // seqscan synchronisation only moves where scans start.
                let v = if BOOLEANS.contains(&key.as_str()) {
                    parse_bool(name, &v)?.to_owned()
                } else {
                    v
                };
                if key.ends_with("transaction_isolation")
                    && freshet_sql::Isolation::parse(&v).is_none()
                {
                    return Err(PgError::new(
                        SqlState("22023"),
                        format!("invalid value for parameter \"{name}\": \"{v}\""),
                    ));
                }
                self.overrides.insert(key, v);
            }
        }
        Ok(())
    }

    /// `RESET name` or `RESET ALL`.
    pub fn reset(&mut self, name: Option<&str>) {
        match name {
            Some(n) => {
                self.overrides.remove(&canonical(n));
            }
            None => self.overrides.clear(),
        }
    }

    /// `SHOW ALL`: every variable (as PostgreSQL spells its name) and its value, by name.
    pub fn all(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = DEFAULTS
            .iter()
            .map(|(k, v)| (k.to_string(), self.overrides.get(*k).cloned().unwrap_or_else(|| v.to_string())))
            .collect();
        for (k, v) in &self.overrides {
            if !DEFAULTS.iter().any(|(d, _)| d == k) {
                out.push((k.clone(), v.clone()));
            }
        }
        for (name, _) in &mut out {
            if let Some(spelled) = ["DateStyle", "IntervalStyle", "TimeZone"]
                .iter()
                .find(|s| s.eq_ignore_ascii_case(name))
            {
                *name = (*spelled).to_owned();
            }
        }
        out.sort_by_key(|(k, _)| k.to_ascii_lowercase());
        out
    }

    /// Every variable as `pg_settings` shows it: `SHOW ALL`'s, with its default and whether
    /// the session set it.
    pub fn settings(&self) -> Vec<crate::query::pg_settings::Setting> {
        self.all()
            .into_iter()
            .map(|(name, value)| {
                let key = canonical(&name);
                let default = DEFAULTS.iter().find(|(k, _)| *k == key).map(|(_, v)| (*v).to_owned());
                crate::query::pg_settings::Setting {
                    set: self.overrides.contains_key(&key),
                    read_only: READ_ONLY.contains(&key.as_str()),
                    default: default.unwrap_or_else(|| value.clone()),
                    name,
                    value,
                }
            })
            .collect()
    }

    /// `SHOW name`: the column name and the value.
    pub fn show(&self, name: &str) -> Result<(String, String), PgError> {
        let key = canonical(name);
        if let Some(v) = self.overrides.get(&key) {
            return Ok((name.to_owned(), v.clone()));
        }
        DEFAULTS
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| (name.to_owned(), (*v).to_owned()))
            .ok_or_else(|| unrecognized(name))
    }

    /// A timeout variable's value; `None` when it is 0 (no timeout).
    pub fn timeout(&self, name: &str) -> Option<std::time::Duration> {
        let v = self.overrides.get(name)?;
        parse_timeout(name, v).ok().flatten()
    }

    /// The session time zone in the form DataFusion takes (`+00:00` or an IANA name).
    pub fn datafusion_time_zone(&self) -> Option<String> {
        let tz = self
            .overrides
            .get("timezone")
            .map(String::as_str)
            .unwrap_or("UTC");
        Some(match tz.to_ascii_uppercase().as_str() {
            "UTC" | "GMT" | "ETC/UTC" | "Z" => "+00:00".to_owned(),
            _ => tz.to_owned(),
        })
    }
}

/// Boolean variables, printed `on`/`off` as PostgreSQL does.
const BOOLEANS: &[&str] = &["row_security", "synchronize_seqscans"];

/// A boolean as PostgreSQL's GUCs take it.
fn parse_bool(name: &str, v: &str) -> Result<&'static str, PgError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" | "t" | "y" => Ok("on"),
        "off" | "false" | "no" | "0" | "f" | "n" => Ok("off"),
        _ => Err(PgError::new(
            SqlState::INVALID_PARAMETER_VALUE,
            format!("parameter \"{name}\" requires a Boolean value"),
        )),
    }
}

/// Variables holding durations (milliseconds unless a unit is given).
const TIMEOUTS: &[&str] = &["statement_timeout", "idle_in_transaction_session_timeout"];

/// A duration as PostgreSQL's GUCs take it: `250`, `'250ms'`, `'5s'`, `'2min'`, `'1h'`,
/// `'1d'`; 0 is none.
fn parse_timeout(name: &str, v: &str) -> Result<Option<std::time::Duration>, PgError> {
    let t = v.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = (&t[..split], t[split..].trim());
    let ms_per = match unit.to_ascii_lowercase().as_str() {
        "" | "ms" => 1.0,
        "s" => 1_000.0,
        "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => f64::NAN,
    };
    match num.parse::<f64>() {
        Ok(n) if ms_per.is_finite() && n >= 0.0 && n * ms_per <= i32::MAX as f64 => {
            let ms = (n * ms_per).round() as u64;
            Ok((ms > 0).then(|| std::time::Duration::from_millis(ms)))
        }
        _ => Err(PgError::new(
            SqlState::INVALID_PARAMETER_VALUE,
            format!("invalid value for parameter \"{name}\": \"{v}\""),
        )),
    }
}

fn canonical(name: &str) -> String {
    let n = name.to_ascii_lowercase();
    match n.as_str() {
        "time zone" => "timezone".to_owned(),
        "transaction isolation level" => "transaction_isolation".to_owned(),
        "names" => "client_encoding".to_owned(),
        _ => n,
    }
}

fn unrecognized(name: &str) -> PgError {
    PgError::new(
        SqlState::UNDEFINED_OBJECT,
        format!("unrecognized configuration parameter \"{name}\""),
    )
}

fn normalize_encoding(v: &str) -> Result<String, PgError> {
    match v.to_ascii_uppercase().replace(['-', '_'], "").as_str() {
        "UTF8" | "UNICODE" => Ok("UTF8".to_owned()),
        _ => Err(PgError::not_supported(format!("client encoding \"{v}\""))),
    }
}

fn validate_time_zone(v: &str) -> Result<(), PgError> {
    let ok = !v.is_empty()
        && v.len() < 64
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_+-:".contains(c));
    if ok {
        Ok(())
    } else {
        Err(PgError::new(
            SqlState::INVALID_PARAMETER_VALUE,
            format!("invalid value for parameter \"TimeZone\": \"{v}\""),
        ))
    }
}

/// `current_setting(name [, missing_ok])`: what `SHOW name` says in the session that plans
/// the call (NULL for an unknown name when `missing_ok`).
#[derive(Debug)]
pub struct CurrentSetting {
    pub vars: std::sync::Arc<std::sync::Mutex<SessionVars>>,
    pub signature: datafusion::logical_expr::Signature,
}

impl PartialEq for CurrentSetting {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.vars, &other.vars)
    }
}

impl Eq for CurrentSetting {}

impl std::hash::Hash for CurrentSetting {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        std::sync::Arc::as_ptr(&self.vars).hash(state);
    }
}

impl CurrentSetting {
    pub fn new(vars: std::sync::Arc<std::sync::Mutex<SessionVars>>) -> Self {
        use datafusion::arrow::datatypes::DataType;
        use datafusion::logical_expr::{TypeSignature, Volatility};
        CurrentSetting {
            vars,
            signature: datafusion::logical_expr::Signature::one_of(
                vec![
                    TypeSignature::Exact(vec![DataType::Utf8]),
                    TypeSignature::Exact(vec![DataType::Utf8, DataType::Boolean]),
                ],
                Volatility::Stable,
            ),
        }
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for CurrentSetting {
    fn name(&self) -> &str {
        "current_setting"
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(
        &self,
        _args: &[datafusion::arrow::datatypes::DataType],
    ) -> datafusion::error::Result<datafusion::arrow::datatypes::DataType> {
        Ok(datafusion::arrow::datatypes::DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::error::Result<datafusion::logical_expr::ColumnarValue> {
        use datafusion::arrow::array::{Array, AsArray, StringBuilder};
        use datafusion::logical_expr::ColumnarValue;
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if scalar { 1 } else { args.number_rows };
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let names = arrays[0].as_string::<i32>();
        let missing_ok = arrays.get(1).map(|a| a.as_boolean().clone());
        let vars = self
            .vars
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out = StringBuilder::new();
        for row in 0..rows {
            let at = |len: usize| if len == 1 { 0 } else { row };
            if names.is_null(at(names.len())) {
                out.append_null();
                continue;
            }
            match vars.show(names.value(at(names.len()))) {
                Ok((_, value)) => out.append_value(value),
                Err(_)
                    if missing_ok
                        .as_ref()
                        .is_some_and(|m| m.is_valid(at(m.len())) && m.value(at(m.len()))) =>
                {
                    out.append_null()
                }
                Err(e) => return Err(datafusion::error::DataFusionError::External(Box::new(e))),
            }
        }
        let out: datafusion::arrow::array::ArrayRef = std::sync::Arc::new(out.finish());
        Ok(if scalar {
            ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(&out, 0)?)
        } else {
            ColumnarValue::Array(out)
        })
    }
}

/// `set_config(name, value, is_local)`: `SET name = value` in the session that runs the call,
/// answering the new value as `SHOW` prints it. A NULL value resets the variable. `is_local`
/// is taken as `SET LOCAL` is (for the session).
#[derive(Debug)]
pub struct SetConfig {
    pub vars: std::sync::Arc<std::sync::Mutex<SessionVars>>,
    pub signature: datafusion::logical_expr::Signature,
}

impl PartialEq for SetConfig {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.vars, &other.vars)
    }
}

impl Eq for SetConfig {}

impl std::hash::Hash for SetConfig {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        std::sync::Arc::as_ptr(&self.vars).hash(state);
    }
}

impl SetConfig {
    pub fn new(vars: std::sync::Arc<std::sync::Mutex<SessionVars>>) -> Self {
        use datafusion::arrow::datatypes::DataType;
        use datafusion::logical_expr::{Signature, Volatility};
        SetConfig {
            vars,
            signature: Signature::exact(
                vec![DataType::Utf8, DataType::Utf8, DataType::Boolean],
                Volatility::Volatile,
            ),
        }
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for SetConfig {
    fn name(&self) -> &str {
        "set_config"
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(
        &self,
        _args: &[datafusion::arrow::datatypes::DataType],
    ) -> datafusion::error::Result<datafusion::arrow::datatypes::DataType> {
        Ok(datafusion::arrow::datatypes::DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::error::Result<datafusion::logical_expr::ColumnarValue> {
        use datafusion::arrow::array::{Array, AsArray, StringBuilder};
        use datafusion::logical_expr::ColumnarValue;
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if scalar { 1 } else { args.number_rows };
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let (names, values) = (arrays[0].as_string::<i32>(), arrays[1].as_string::<i32>());
        let external = |e: PgError| datafusion::error::DataFusionError::External(Box::new(e));
        let mut vars = self
            .vars
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out = StringBuilder::new();
        for row in 0..rows {
            let at = |len: usize| if len == 1 { 0 } else { row };
            let name_at = at(names.len());
            if names.is_null(name_at) {
                return Err(external(PgError::new(
                    SqlState("22004"),
                    "SET requires parameter name",
                )));
            }
            let name = names.value(name_at);
            let value_at = at(values.len());
            let value = if values.is_null(value_at) {
                SetValue::Default
            } else {
                SetValue::Value(values.value(value_at).to_owned())
            };
            vars.apply_set(name, value).map_err(external)?;
            out.append_value(vars.show(name).map_err(external)?.1);
        }
        let out: datafusion::arrow::array::ArrayRef = std::sync::Arc::new(out.finish());
        Ok(if scalar {
            ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(&out, 0)?)
        } else {
            ColumnarValue::Array(out)
        })
    }
}
