//! A value that must never be printed: its `Debug` and `Display` show
//! `[REDACTED]`, so a stray `{:?}` of a struct that holds one cannot leak
//! it. The value is reached only by naming it: [`Secret::expose`].

use std::fmt;

/// A value that is shown as `[REDACTED]`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// The value itself, for the one place that needs it (the database,
    /// a child's environment).
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(crate::redact::REDACTED)
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(crate::redact::REDACTED)
    }
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new("hunter22-password".to_string());
        assert_eq!(format!("{s:?} {s}"), "[REDACTED] [REDACTED]");
        assert_eq!(s.expose(), "hunter22-password");
        #[derive(Debug)]
        #[expect(dead_code, reason = "only its Debug output is read")]
        struct Holder {
            raw: Secret<String>,
        }
        let h = Holder { raw: s };
        assert!(!format!("{h:?}").contains("hunter22"));
    }
}
