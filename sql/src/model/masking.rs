//! Masking of contact values (SPEC §8) for users without
//! `cohort_unmasked`: applied to whole columns of a scan's batches, before
//! any filter, join, sort or aggregate sees them. Rules by column: phones
//! keep the first 3 and last 4 digits (`138****2802`), e-mail keeps the
//! first character of the local part and the domain (`z***@example.com`),
//! names keep the first character (`张*`), id cards keep the first 6 and
//! last 4 characters; other text keeps its first and last character.
//! Values too short for a rule are masked whole; non-text columns become
//! NULL. Characters, not bytes, are counted.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType as ArrowType;
use datafusion::arrow::error::ArrowError;

/// How a column is masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskKind {
    /// `mobile_phone`, `home_phone`.
    Phone,
    /// `email`.
    Email,
    /// `name`, `nickname`.
    Name,
    /// `id_card`.
    IdCard,
    /// Any other text column.
    Text,
}

impl MaskKind {
    /// The rule for the contact column `name`.
    pub fn of(column: &str) -> MaskKind {
        match column {
            "mobile_phone" | "home_phone" => MaskKind::Phone,
            "email" => MaskKind::Email,
            "name" | "nickname" => MaskKind::Name,
            "id_card" => MaskKind::IdCard,
            _ => MaskKind::Text,
        }
    }
}

fn stars(n: usize) -> String {
    "*".repeat(n)
}

fn keep(chars: &[char], head: usize, tail: usize) -> String {
    if chars.len() <= head + tail {
        return stars(chars.len().max(1));
    }
    let mut s: String = chars[..head].iter().collect();
    s.push_str(&stars(chars.len() - head - tail));
    s.extend(&chars[chars.len() - tail..]);
    s
}

/// The masked form of `value`.
pub fn mask_text(kind: MaskKind, value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    match kind {
        MaskKind::Phone => {
            if chars.len() < 8 {
                stars(chars.len().max(1))
            } else {
                let mut s: String = chars[..3].iter().collect();
                s.push_str("****");
                s.extend(&chars[chars.len() - 4..]);
                s
            }
        }
        MaskKind::Email => match value.split_once('@') {
            Some((local, domain)) if !local.is_empty() => {
                let first = local.chars().next().unwrap_or('*');
                format!("{first}***@{domain}")
            }
            _ => stars(3),
        },
        MaskKind::Name => match chars.first() {
            Some(c) if chars.len() > 1 => format!("{c}{}", stars(chars.len() - 1)),
            _ => "*".into(),
        },
        MaskKind::IdCard => keep(&chars, 6, 4),
        MaskKind::Text => keep(&chars, 1, 1),
    }
}

/// Masks one column: text values by `kind`, anything else to NULL.
pub fn mask_array(kind: MaskKind, array: &ArrayRef) -> Result<ArrayRef, ArrowError> {
    match array.data_type() {
        ArrowType::Utf8 | ArrowType::LargeUtf8 | ArrowType::Utf8View => {
            let s = cast(array, &ArrowType::Utf8)?;
            let s = s
                .as_any()
                .downcast_ref::<StringArray>()
                .expect("cast to Utf8 gives a StringArray");
            let masked: StringArray = s.iter().map(|v| v.map(|v| mask_text(kind, v))).collect();
            cast(&(Arc::new(masked) as ArrayRef), array.data_type())
        }
        other => Ok(datafusion::arrow::array::new_null_array(other, array.len())),
    }
}

/// Masks the columns `cols` (`(index, kind)`) of `batch`.
pub fn mask_batch(
    batch: &RecordBatch,
    cols: &[(usize, MaskKind)],
) -> Result<RecordBatch, ArrowError> {
    if cols.is_empty() {
        return Ok(batch.clone());
    }
    let mut arrays: Vec<ArrayRef> = batch.columns().to_vec();
    for (i, kind) in cols {
        arrays[*i] = mask_array(*kind, &arrays[*i])?;
    }
    RecordBatch::try_new(batch.schema(), arrays)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        assert_eq!(mask_text(MaskKind::Phone, "13812342802"), "138****2802");
        assert_eq!(mask_text(MaskKind::Phone, "13899992802"), "138****2802");
        assert_eq!(mask_text(MaskKind::Phone, "123"), "***");
        assert_eq!(
            mask_text(MaskKind::Email, "zhang@example.com"),
            "z***@example.com"
        );
        assert_eq!(mask_text(MaskKind::Email, "nonsense"), "***");
        assert_eq!(mask_text(MaskKind::Name, "张三"), "张*");
        assert_eq!(mask_text(MaskKind::Name, "张三丰"), "张**");
        assert_eq!(mask_text(MaskKind::Name, "张"), "*");
        assert_eq!(
            mask_text(MaskKind::IdCard, "110101199003071234"),
            "110101********1234"
        );
        assert_eq!(mask_text(MaskKind::Text, "上海市"), "上*市");
        assert_eq!(mask_text(MaskKind::Text, "ab"), "**");
    }
}
