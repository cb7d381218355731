//! Bound parameter values and types as clients send them: the Arrow type of
//! a parameter type OID from a Parse message, and values normalised before
//! arrow-pg decodes them (pgjdbc sends `setDate` values as text with a zone
//! suffix, `2025-06-01 +00`, and type 0, which PostgreSQL reads as a date).

use datafusion::arrow::datatypes::DataType;
use pgwire::api::portal::Portal;
use pgwire::api::results::FieldFormat;

/// `portal` with text-format date parameters cut to their date part.
pub fn normalize_text_parameters<S: Clone + Default>(
    portal: &Portal<S>,
    types: &[Option<DataType>],
) -> Portal<S> {
    let mut p = Portal::default();
    p.name = portal.name.clone();
    p.statement = portal.statement.clone();
    p.parameter_format = portal.parameter_format.clone();
    p.parameters = portal.parameters.clone();
    p.result_column_format = portal.result_column_format.clone();
    for (i, v) in p.parameters.iter_mut().enumerate() {
        let is_date = matches!(types.get(i), Some(Some(DataType::Date32)));
        let hinted = portal.statement.parameter_types.get(i).cloned().flatten();
        let text = portal.parameter_format.format_for(i) == FieldFormat::Text;
        if !(is_date && text && (hinted.is_none() || hinted == Some(pgwire::api::Type::DATE))) {
            continue;
        }
        if let Some(bytes) = v {
            if let Some(pos) = bytes.iter().position(|b| *b == b' ') {
                *v = Some(bytes.slice(..pos));
            }
        }
    }
    p
}

/// The Arrow type a parameter declared with PostgreSQL type `t` is decoded to
/// (arrow-pg's decoding); `None` for types left to inference.
pub fn arrow_type(t: &pgwire::api::Type) -> Option<DataType> {
    use datafusion::arrow::datatypes::TimeUnit;
    use pgwire::api::Type;
    Some(match *t {
        Type::BOOL => DataType::Boolean,
        Type::INT2 => DataType::Int16,
        Type::INT4 => DataType::Int32,
        Type::INT8 => DataType::Int64,
        Type::FLOAT4 => DataType::Float32,
        Type::FLOAT8 => DataType::Float64,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => DataType::Utf8,
        Type::DATE => DataType::Date32,
        Type::TIMESTAMP => DataType::Timestamp(TimeUnit::Microsecond, None),
        Type::TIMESTAMPTZ => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        Type::BYTEA => DataType::Binary,
        _ => return None,
    })
}
