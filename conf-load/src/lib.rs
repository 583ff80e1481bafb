//! Turns a layered [`config`] source (file plus environment) into the program's configuration type, for
//! the appliance and the mapper alike.
//!
//! Errors name the field (`nat.apps[0].port`, in serde_path_to_error's form; `config` for the whole).
//! And a float is refused where an integer is expected: `config` converts values between kinds as it
//! goes, so `max_sessions = 1.5` became 2 without a word (and `-1.5` became 0 for an unsigned field).
//! Every float of the source is handed on as its text instead, which a float or string field parses as
//! before and an integer field refuses; the error is then worded for what was written.
use config::{ConfigError, Source, Value, ValueKind};
use serde::de::DeserializeOwned;
use std::collections::HashMap;

/// A problem with one field: its path and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub msg: String,
}

/// `c`, deserialized into `T`.
pub fn deserialize<T: DeserializeOwned>(c: &config::Config) -> Result<T, FieldError> {
    let map = c.collect().map_err(|e| FieldError {
        path: "config".into(),
        msg: e.to_string(),
    })?;
    let mut root = Value::new(None, ValueKind::Table(map));
    let mut floats = HashMap::new();
    floats_as_text(&mut root, "", &mut floats);
    serde_path_to_error::deserialize(root).map_err(|e| {
        let path = e.path().to_string();
        let msg = match floats.get(&path) {
            // A number refused (a value parsed from its text, such as an address, says what it is).
            Some(f) if matches!(innermost(e.inner()), ConfigError::Type { .. }) => {
                format!("invalid type: the float {f}, expected an integer")
            }
            _ => without_key(e.inner()),
        };
        let path = if path == "." { "config".to_string() } else { path };
        FieldError { path, msg }
    })
}

/// The error `e` wraps, if it is one that `config` gave a key.
fn innermost(e: &ConfigError) -> &ConfigError {
    match e {
        ConfigError::At { error, .. } => innermost(error),
        other => other,
    }
}

/// What `e` says, without the key `config` adds to it (the path says that, and better: `config` leaves
/// out the dot before a field of an array's element).
fn without_key(e: &ConfigError) -> String {
    let origin = |o: &Option<String>| o.as_ref().map(|o| format!(" in {o}")).unwrap_or_default();
    match e {
        ConfigError::At { error, origin: o, .. } => format!("{}{}", without_key(error), origin(o)),
        ConfigError::Type {
            unexpected,
            expected,
            origin: o,
            ..
        } => format!("invalid type: {unexpected}, expected {expected}{}", origin(o)),
        other => other.to_string(),
    }
}

/// Replaces every float under `v` by its text (which keeps a `.0` or an exponent, so that an integer
/// field cannot parse it), recording the text by path.
fn floats_as_text(v: &mut Value, path: &str, floats: &mut HashMap<String, String>) {
    let text = match &mut v.kind {
        ValueKind::Float(f) => format!("{f:?}"),
        ValueKind::Table(m) => {
            for (k, x) in m.iter_mut() {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                floats_as_text(x, &p, floats);
            }
            return;
        }
        ValueKind::Array(a) => {
            for (i, x) in a.iter_mut().enumerate() {
                floats_as_text(x, &format!("{path}[{i}]"), floats);
            }
            return;
        }
        _ => return,
    };
    floats.insert(path.to_string(), text.clone());
    v.kind = ValueKind::String(text);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        port: u16,
        #[serde(default)]
        weights: Vec<u32>,
        #[serde(default)]
        addr: Option<std::net::Ipv4Addr>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Top {
        max: u64,
        gain: f64,
        name: String,
        #[serde(default)]
        apps: Vec<Inner>,
    }

    fn parse(text: &str) -> Result<Top, FieldError> {
        let c = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .build()
            .unwrap();
        deserialize(&c)
    }

    fn err(path: &str, msg: &str) -> Result<Top, FieldError> {
        Err(FieldError {
            path: path.into(),
            msg: msg.into(),
        })
    }

    #[test]
    fn kinds_that_fit_pass_as_before() {
        let t = parse("max = 7\ngain = 0.25\nname = \"a\"\n[[apps]]\nport = 80\nweights = [1, 2]").unwrap();
        assert_eq!(
            t,
            Top {
                max: 7,
                gain: 0.25,
                name: "a".into(),
                apps: vec![Inner {
                    port: 80,
                    weights: vec![1, 2],
                    addr: None,
                }]
            }
        );
        // An integer where a float is expected, a float or a number where a string is (as environment
        // values are), and exponents for floats.
        let t = parse("max = 7\ngain = 2\nname = 1.5").unwrap();
        assert_eq!((t.gain, t.name.as_str()), (2.0, "1.5"));
        assert_eq!(parse("max = 7\ngain = 1e-3\nname = 12").unwrap().gain, 1e-3);
    }

    #[test]
    fn a_float_for_an_integer_is_refused_at_its_path() {
        let base = "gain = 0.5\nname = \"a\"\n";
        let msg = |f: &str| format!("invalid type: the float {f}, expected an integer");
        assert_eq!(parse(&format!("max = 1.5\n{base}")), err("max", &msg("1.5")));
        assert_eq!(parse(&format!("max = -1.5\n{base}")), err("max", &msg("-1.5")));
        assert_eq!(parse(&format!("max = 2.0\n{base}")), err("max", &msg("2.0")));
        assert_eq!(parse(&format!("max = 1e6\n{base}")), err("max", &msg("1000000.0")));
        assert_eq!(
            parse(&format!("max = 1\n{base}[[apps]]\nport = 80.5")),
            err("apps[0].port", &msg("80.5"))
        );
        assert_eq!(
            parse(&format!("max = 1\n{base}[[apps]]\nport = 80\nweights = [1, 2.5]")),
            err("apps[0].weights[1]", &msg("2.5"))
        );
    }

    #[test]
    fn other_errors_keep_their_words_and_paths() {
        let e = parse("max = 1\ngain = 0.5\nname = \"a\"\nextra = 1").unwrap_err();
        assert!(e.msg.contains("unknown field `extra`"), "{e:?}");
        let e = parse("max = \"x\"\ngain = 0.5\nname = \"a\"").unwrap_err();
        assert_eq!(e.path, "max", "{e:?}");
        assert!(e.msg.contains("\"x\""), "{e:?}");
        // A float where a value parsed from text belongs keeps that value's words.
        let e = parse("max = 1\ngain = 0.5\nname = \"a\"\n[[apps]]\nport = 80\naddr = 1.5").unwrap_err();
        assert_eq!(
            (e.path.as_str(), e.msg.as_str()),
            ("apps[0].addr", "invalid IPv4 address syntax")
        );
        // Without the key `config` appends: the path names the field.
        let e = parse("max = 1\ngain = 0.5\nname = \"a\"\n[[apps]]\nport = \"x\"").unwrap_err();
        assert_eq!(
            (e.path.as_str(), e.msg.as_str()),
            ("apps[0].port", "invalid type: string \"x\", expected an integer")
        );
    }
}
