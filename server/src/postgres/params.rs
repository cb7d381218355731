//! Bound parameter values as clients send them, normalised before arrow-pg
//! decodes them: pgjdbc sends `setDate` values as text with a zone suffix
//! (`2025-06-01 +00`) and type 0, which PostgreSQL reads as a date.

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
