//! What is wrong with a configuration: each problem names the path of its field
//! (`nat.apps[0].targets[0]`), and all of them are reported together.
use std::fmt;

/// One problem found in a configuration, with the path of the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub msg: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.msg)
    }
}

/// All problems of a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.0 {
            writeln!(f, "{p}")?;
        }
        Ok(())
    }
}

/// A problem at `path`.
pub fn problem(path: impl Into<String>, msg: impl Into<String>) -> Problem {
    Problem {
        path: path.into(),
        msg: msg.into(),
    }
}
