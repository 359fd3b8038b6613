//! The `?` parameters of the SQL in `queries/`: bound as string literals for the local engine,
//! or passed as Athena's `ExecutionParameters`, so one text runs in both places.

/// The query's `?` placeholders and the values given do not pair up.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("the query has {placeholders} `?` parameters but {values} values were given")]
pub struct ParameterError {
    pub placeholders: usize,
    pub values: usize,
}

/// Copies `sql`, handing each `?` outside string literals and comments to `placeholder` (with
/// its index) to write in its place; returns the text and the number of placeholders.
fn substitute_placeholders(
    sql: &str,
    mut placeholder: impl FnMut(usize, &mut String),
) -> (String, usize) {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    let mut placeholders = 0;
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                out.push(c);
                for inner in chars.by_ref() {
                    out.push(inner);
                    if inner == '\'' {
                        break;
                    }
                }
            }
            '-' if chars.peek() == Some(&'-') => {
                out.push(c);
                for inner in chars.by_ref() {
                    out.push(inner);
                    if inner == '\n' {
                        break;
                    }
                }
            }
            '?' => {
                placeholder(placeholders, &mut out);
                placeholders += 1;
            }
            _ => out.push(c),
        }
    }
    (out, placeholders)
}

/// `value` as an SQL string literal: quoted, with quotes doubled.
fn string_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

fn check_parameter_count(placeholders: usize, values: &[String]) -> Result<(), ParameterError> {
    if placeholders != values.len() {
        return Err(ParameterError {
            placeholders,
            values: values.len(),
        });
    }
    Ok(())
}

/// Replaces each `?` outside string literals and comments with the next value as an SQL string
/// literal, for the local engine.
pub fn bind_parameters(sql: &str, values: &[String]) -> Result<String, ParameterError> {
    let (bound, placeholders) = substitute_placeholders(sql, |index, out| {
        if let Some(value) = values.get(index) {
            out.push_str(&string_literal(value));
        }
    });
    check_parameter_count(placeholders, values)?;
    Ok(bound)
}

/// The values for the `?` in `sql` as Athena's `ExecutionParameters` take them: SQL literals, so
/// strings in quotes (Athena pastes each value in as written). The SQL itself is sent unchanged.
pub fn execution_parameters(sql: &str, values: &[String]) -> Result<Vec<String>, ParameterError> {
    let (_, placeholders) = substitute_placeholders(sql, |_, _| {});
    check_parameter_count(placeholders, values)?;
    Ok(values.iter().map(|value| string_literal(value)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_parameters_as_quoted_literals() {
        let sql = "SELECT '?' AS q -- what?\nFROM t WHERE country = ? AND d BETWEEN ? AND ?";
        let values = [
            "O'Brien Land".to_owned(),
            "2011-01-01".into(),
            "2011-01-31".into(),
        ];
        assert_eq!(
            bind_parameters(sql, &values).expect("binds"),
            "SELECT '?' AS q -- what?\nFROM t WHERE country = 'O''Brien Land' AND d BETWEEN '2011-01-01' AND '2011-01-31'"
        );
        assert!(matches!(
            bind_parameters(sql, &values[..1]),
            Err(ParameterError {
                placeholders: 3,
                values: 1
            })
        ));
    }

    #[test]
    fn execution_parameters_are_quoted_literals_and_counted() {
        let sql = "SELECT * FROM t WHERE country = ? AND note <> '?' AND d < ? -- ?";
        let values = ["O'Brien Land".to_owned(), "2011-01-31".into()];
        assert_eq!(
            execution_parameters(sql, &values).expect("two placeholders"),
            ["'O''Brien Land'", "'2011-01-31'"]
        );
        assert!(matches!(
            execution_parameters(sql, &[]),
            Err(ParameterError {
                placeholders: 2,
                values: 0
            })
        ));
    }
}
