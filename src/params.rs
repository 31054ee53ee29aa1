//! Params: typed inputs from `--set`, `--params-file` and defaults.
//!
//! Precedence: `--set` beats the params file, which beats the default.

use indexmap::IndexMap;
use serde::Serialize;
use serde_json::Value;

use crate::model::{Param, ParamType};

/// Where a param's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    Set,
    ParamsFile,
    Default,
    Unset,
}

/// A param with its final value.
#[derive(Debug, Clone, Serialize)]
pub struct ParamValue {
    pub value: Value,
    pub secret: bool,
    pub origin: Origin,
}

/// Every declared param, in declaration order.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(transparent)]
pub struct Params(pub IndexMap<String, ParamValue>);

impl Params {
    /// Values for templates: secrets included (they are redacted on output).
    pub fn values(&self) -> IndexMap<&str, &Value> {
        self.0.iter().map(|(k, v)| (k.as_str(), &v.value)).collect()
    }

    /// The values templates see: a param that is unset (no value and no
    /// default) is left out, so a template that uses it fails to render
    /// instead of printing `none`.
    pub fn defined(&self) -> IndexMap<&str, &Value> {
        self.0
            .iter()
            .filter(|(_, v)| v.origin != Origin::Unset)
            .map(|(k, v)| (k.as_str(), &v.value))
            .collect()
    }

    /// The names of the params that are unset.
    pub fn unset(&self) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(_, v)| v.origin == Origin::Unset)
            .map(|(k, _)| k.as_str())
            .collect()
    }

    /// The strings that must never be printed.
    pub fn secret_values(&self) -> Vec<String> {
        self.0
            .values()
            .filter(|p| p.secret)
            .filter_map(|p| match &p.value {
                Value::Null => None,
                Value::String(s) => Some(s.clone()),
                v => Some(v.to_string()),
            })
            .collect()
    }
}

/// Parse a `--set` value for a param of type `ty`.
pub fn parse_cli(ty: ParamType, raw: &str) -> Result<Value, String> {
    match ty {
        ParamType::String => Ok(Value::String(raw.to_string())),
        ParamType::Integer => raw
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| "expected a whole number".to_string()),
        ParamType::Number => raw
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| "expected a number".to_string()),
        ParamType::Boolean => match raw.trim() {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err("expected `true` or `false`".to_string()),
        },
    }
}

/// Check a typed value (from YAML) against the param's type.
pub fn check_type(ty: ParamType, v: &Value) -> Result<(), String> {
    let ok = match ty {
        ParamType::String => v.is_string(),
        ParamType::Integer => v.is_i64() || v.is_u64(),
        ParamType::Number => v.is_number(),
        ParamType::Boolean => v.is_boolean(),
    };
    if ok {
        return Ok(());
    }
    let hint = match (ty, v) {
        (ParamType::String, Value::Number(_) | Value::Bool(_)) => {
            " (quote it, so YAML keeps it as text)"
        }
        _ => "",
    };
    Err(format!(
        "expected {}, found {}{hint}",
        type_words(ty),
        describe(v)
    ))
}

fn type_words(ty: ParamType) -> &'static str {
    match ty {
        ParamType::String => "a string",
        ParamType::Integer => "a whole number",
        ParamType::Number => "a number",
        ParamType::Boolean => "true or false",
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("the string `{s}`"),
        Value::Null => "nothing".into(),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a mapping".into(),
        other => format!("`{other}`"),
    }
}

/// Check a well-typed value against enum, pattern and bounds.
pub fn check_constraints(p: &Param, v: &Value) -> Result<(), String> {
    if let Some(allowed) = &p.allowed
        && !allowed.iter().any(|a| same(a, v))
    {
        let list: Vec<String> = allowed.iter().map(show).collect();
        return Err(format!("{} is not one of {}", show(v), list.join(", ")));
    }
    if let (Some(pattern), Some(s)) = (&p.pattern, v.as_str()) {
        let re = anchored(pattern).map_err(|e| format!("invalid pattern: {e}"))?;
        if !re.is_match(s) {
            return Err(format!(
                "{} does not match the pattern `{pattern}`",
                show(v)
            ));
        }
    }
    if let Some(n) = v.as_f64() {
        if let Some(min) = p.minimum
            && n < min
        {
            return Err(format!("{} is below the minimum {min}", show(v)));
        }
        if let Some(max) = p.maximum
            && n > max
        {
            return Err(format!("{} is above the maximum {max}", show(v)));
        }
    }
    Ok(())
}

/// Compile a param pattern so it must match the whole value.
pub fn anchored(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::Regex::new(&format!("^(?:{pattern})$"))
}

fn same(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => format!("`{s}`"),
        other => format!("`{other}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(ty: ParamType) -> Param {
        Param {
            ty,
            required: false,
            default: None,
            allowed: None,
            pattern: None,
            minimum: None,
            maximum: None,
            secret: false,
            description: None,
        }
    }

    #[test]
    fn cli_values_are_typed() {
        assert_eq!(parse_cli(ParamType::Integer, "42"), Ok(Value::from(42)));
        assert_eq!(
            parse_cli(ParamType::Integer, "4.2"),
            Err("expected a whole number".into())
        );
        assert_eq!(parse_cli(ParamType::Number, "4.5"), Ok(Value::from(4.5)));
        assert_eq!(
            parse_cli(ParamType::Boolean, "yes"),
            Err("expected `true` or `false`".into())
        );
        assert_eq!(parse_cli(ParamType::String, " x "), Ok(Value::from(" x ")));
    }

    #[test]
    fn yaml_numbers_are_not_silently_strings() {
        let err = check_type(ParamType::String, &Value::from(1.1)).unwrap_err();
        assert_eq!(
            err,
            "expected a string, found `1.1` (quote it, so YAML keeps it as text)"
        );
    }

    #[test]
    fn constraints_are_checked() {
        let mut p = param(ParamType::String);
        p.allowed = Some(vec![Value::from("staging"), Value::from("prod")]);
        assert!(check_constraints(&p, &Value::from("prod")).is_ok());
        assert_eq!(
            check_constraints(&p, &Value::from("dev")).unwrap_err(),
            "`dev` is not one of `staging`, `prod`"
        );
        let mut p = param(ParamType::String);
        p.pattern = Some("[a-z_]+".into());
        assert!(check_constraints(&p, &Value::from("orders")).is_ok());
        assert!(check_constraints(&p, &Value::from("orders; DROP")).is_err());
        let mut p = param(ParamType::Integer);
        p.minimum = Some(1.0);
        p.maximum = Some(10.0);
        assert_eq!(
            check_constraints(&p, &Value::from(0)).unwrap_err(),
            "`0` is below the minimum 1"
        );
        assert!(check_constraints(&p, &Value::from(10)).is_ok());
    }
}
