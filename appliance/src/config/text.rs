//! Values written as text in the configuration, parsed while it is deserialized: a value that does not
//! parse is refused there, with its field's path (as an unknown key is) and the text written. Addresses,
//! prefixes and MAC addresses are [`Text`], read with `#[serde(deserialize_with = "text::one")]` (or
//! `list`, `option`); enums are [`Named`] (see [`named!`]), read with `#[serde(try_from = "String")]`.
use ipnet::Ipv4Net;
use pipelines::MacAddr;
use serde::de::{Deserializer, Error};
use serde::Deserialize;
use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;

/// A value written as text, and what it is called when the text does not parse.
pub trait Text: FromStr {
    const WHAT: &'static str;
}

impl Text for Ipv4Addr {
    const WHAT: &'static str = "an IPv4 address";
}

impl Text for Ipv4Net {
    const WHAT: &'static str = "an IPv4 address with prefix length (a.b.c.d/n)";
}

impl Text for SocketAddr {
    const WHAT: &'static str = "an address:port";
}

impl Text for MacAddr {
    const WHAT: &'static str = "a MAC address (six two-digit hex bytes, 02:00:00:00:00:01)";
}

/// One value, parsed from its text.
struct Parsed<T>(T);

impl<'de, T: Text> Deserialize<'de> for Parsed<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        match text.parse() {
            Ok(v) => Ok(Parsed(v)),
            Err(_) => Err(D::Error::custom(format!("'{text}' is not {}", T::WHAT))),
        }
    }
}

pub fn one<'de, D: Deserializer<'de>, T: Text>(d: D) -> Result<T, D::Error> {
    Parsed::deserialize(d).map(|p| p.0)
}

pub fn list<'de, D: Deserializer<'de>, T: Text>(d: D) -> Result<Vec<T>, D::Error> {
    Vec::<Parsed<T>>::deserialize(d).map(|v| v.into_iter().map(|p| p.0).collect())
}

pub fn option<'de, D: Deserializer<'de>, T: Text>(d: D) -> Result<Option<T>, D::Error> {
    Option::<Parsed<T>>::deserialize(d).map(|v| v.map(|p| p.0))
}

/// An enum written as one of its names.
pub trait Named: Copy + PartialEq + 'static {
    const NAMES: &'static [(&'static str, Self)];
}

/// `named!(Type, "name" => Type::Variant, ...)`: [`Named`] for an enum, the `TryFrom<String>` that
/// `#[serde(try_from = "String")]` reads it with, and `Display` as its name.
macro_rules! named {
    ($t:ident, $($name:literal => $v:expr),+ $(,)?) => {
        impl $crate::config::text::Named for $t {
            const NAMES: &'static [(&'static str, $t)] = &[$(($name, $v)),+];
        }

        impl TryFrom<String> for $t {
            type Error = String;
            fn try_from(text: String) -> Result<$t, String> {
                $crate::config::text::from_name(&text)
            }
        }

        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str($crate::config::text::name(*self))
            }
        }
    };
}
pub(crate) use named;

/// The value named `text`.
pub fn from_name<T: Named>(text: &str) -> Result<T, String> {
    match T::NAMES.iter().find(|(n, _)| *n == text) {
        Some((_, v)) => Ok(*v),
        None => {
            let names: Vec<&str> = T::NAMES.iter().map(|(n, _)| *n).collect();
            Err(format!("'{text}' is not one of {}", names.join(", ")))
        }
    }
}

/// The name of `v`.
pub fn name<T: Named>(v: T) -> &'static str {
    T::NAMES.iter().find(|(_, x)| *x == v).map_or("", |(n, _)| n)
}
