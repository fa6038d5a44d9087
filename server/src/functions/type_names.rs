//! Types' names by OID, as `regtype` and `format_type` print them: `pg_regtype_text`,
//! `pg_get_function_result`/`_arguments` and `pg_regtypes` (`oids::regtype[]`) read them here.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, ListBuilder, StringBuilder};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// `pg_regtypes`, for registration.
pub(super) fn regtypes() -> ScalarUDF {
    ScalarUDF::new_from_impl(PgRegtypes {
        signature: Signature::any(1, Volatility::Stable),
    })
}

/// `pg_regtypes(oids)`: an `oid[]` (a list of integers) or an `oidvector`'s text (`25 2276`)
/// as the list of the types' names, as `regtype[]` prints them.
#[derive(Debug, PartialEq, Eq, Hash)]
struct PgRegtypes {
    signature: Signature,
}

impl ScalarUDFImpl for PgRegtypes {
    fn name(&self) -> &str {
        "pg_regtypes"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::new_list(DataType::Utf8, true))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalar = matches!(args.args[0], ColumnarValue::Scalar(_));
        let input = args.args[0].to_array(args.number_rows)?;
        let mut out = ListBuilder::new(StringBuilder::new());
        let mut push = |oids: Option<Vec<Option<i64>>>| match oids {
            Some(oids) => {
                for o in oids {
                    out.values().append_option(o.map(type_name));
                }
                out.append(true);
            }
            None => out.append(false),
        };
        match input.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                let texts = datafusion::arrow::compute::cast(&input, &DataType::Utf8)?;
                for t in texts.as_string::<i32>().iter() {
                    push(t.map(|t| t.split_whitespace().map(|o| o.parse().ok()).collect()));
                }
            }
            DataType::List(_) | DataType::LargeList(_) => {
                let target = DataType::new_list(DataType::Int64, true);
                let lists = datafusion::arrow::compute::cast(&input, &target)?;
                let lists = lists.as_list::<i32>();
                for i in 0..lists.len() {
                    push(lists.is_valid(i).then(|| {
                        lists.value(i).as_primitive::<datafusion::arrow::datatypes::Int64Type>().iter().collect()
                    }));
                }
            }
            DataType::Null => (0..input.len()).for_each(|_| push(None)),
            other => {
                return Err(DataFusionError::Plan(format!(
                    "cannot cast type {other} to regtype[]"
                )))
            }
        }
        let out: datafusion::arrow::array::ArrayRef = Arc::new(out.finish());
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
        } else {
            ColumnarValue::Array(out)
        })
    }
}

/// A type's name as `format_type` prints it, by OID: the built-in types functions take and
/// return; others by number.
pub(super) fn type_name(oid: i64) -> String {
    let name = match oid {
        16 => "boolean",
        17 => "bytea",
        18 => "\"char\"",
        19 => "name",
        20 => "bigint",
        21 => "smallint",
        22 => "int2vector",
        23 => "integer",
        24 => "regproc",
        25 => "text",
        26 => "oid",
        30 => "oidvector",
        114 => "json",
        700 => "real",
        701 => "double precision",
        705 => "unknown",
        1000 => "boolean[]",
        1001 => "bytea[]",
        1005 => "smallint[]",
        1007 => "integer[]",
        1009 => "text[]",
        1014 => "character[]",
        1015 => "character varying[]",
        1016 => "bigint[]",
        1021 => "real[]",
        1022 => "double precision[]",
        1028 => "oid[]",
        1115 => "timestamp without time zone[]",
        1182 => "date[]",
        1185 => "timestamp with time zone[]",
        1187 => "interval[]",
        1231 => "numeric[]",
        2279 => "trigger",
        2951 => "uuid[]",
        3807 => "jsonb[]",
        1042 => "character",
        1043 => "character varying",
        1082 => "date",
        1083 => "time without time zone",
        1114 => "timestamp without time zone",
        1184 => "timestamp with time zone",
        1186 => "interval",
        1700 => "numeric",
        2205 => "regclass",
        2206 => "regtype",
        2249 => "record",
        2275 => "cstring",
        2276 => "\"any\"",
        2277 => "anyarray",
        2278 => "void",
        2281 => "internal",
        2283 => "anyelement",
        2950 => "uuid",
        3802 => "jsonb",
        // The rest of what pg_proc's functions take and return.
        27 => "tid",
        28 => "xid",
        29 => "cid",
        32 => "pg_ddl_command",
        142 => "xml",
        194 => "pg_node_tree",
        269 => "table_am_handler",
        325 => "index_am_handler",
        600 => "point",
        601 => "lseg",
        602 => "path",
        603 => "box",
        604 => "polygon",
        628 => "line",
        650 => "cidr",
        718 => "circle",
        774 => "macaddr8",
        790 => "money",
        829 => "macaddr",
        869 => "inet",
        1033 => "aclitem",
        1034 => "aclitem[]",
        1266 => "time with time zone",
        1560 => "bit",
        1562 => "bit varying",
        1790 => "refcursor",
        2202 => "regprocedure",
        2203 => "regoper",
        2204 => "regoperator",
        2287 => "record[]",
        2280 => "language_handler",
        2776 => "anynonarray",
        2970 => "txid_snapshot",
        3115 => "fdw_handler",
        3220 => "pg_lsn",
        3310 => "tsm_handler",
        3361 => "pg_ndistinct",
        3402 => "pg_dependencies",
        3500 => "anyenum",
        3614 => "tsvector",
        3615 => "tsquery",
        3734 => "regconfig",
        3769 => "regdictionary",
        3831 => "anyrange",
        3838 => "event_trigger",
        3904 => "int4range",
        3906 => "numrange",
        3908 => "tsrange",
        3910 => "tstzrange",
        3912 => "daterange",
        3926 => "int8range",
        4089 => "regnamespace",
        4096 => "regrole",
        4191 => "regcollation",
        4537 => "anymultirange",
        4538 => "anycompatiblemultirange",
        5017 => "pg_mcv_list",
        5038 => "pg_snapshot",
        5069 => "xid8",
        5077 => "anycompatible",
        5078 => "anycompatiblearray",
        5079 => "anycompatiblenonarray",
        5080 => "anycompatiblerange",
        _ => return oid.to_string(),
    };
    name.to_owned()
}
