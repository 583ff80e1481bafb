//! The few EAL arguments the appliance reads itself (for `--check`, which never starts the EAL): the lcore
//! list (`-l`, `--lcores`, `-c`), the main lcore, `--vdev` and `--no-pci`.
use std::collections::BTreeSet;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EalArgs {
    /// Enabled lcores, or None when no core option was given (the EAL then uses every CPU).
    pub lcores: Option<BTreeSet<u32>>,
    /// The core option as written, for messages.
    pub lcores_text: Option<String>,
    pub main_lcore: Option<u32>,
    pub vdevs: Vec<String>,
    pub no_pci: bool,
}

impl EalArgs {
    /// The lcores the EAL will enable and how they were given: the core option, or without one the CPUs
    /// this process may run on (what the EAL then takes; read from `/proc/self/status`). None when
    /// neither is known.
    pub fn enabled_lcores(&self) -> Option<(BTreeSet<u32>, String)> {
        if let Some(l) = &self.lcores {
            return Some((l.clone(), self.lcores_text.clone().unwrap_or_default()));
        }
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let list = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?
            .trim();
        let set = parse_core_list(list).ok()?;
        Some((set, format!("no core option: the CPUs this process may run on, {list}")))
    }

    /// Parses EAL arguments (without the program name). Unknown options are left to the EAL.
    pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<EalArgs, String> {
        let mut out = EalArgs::default();
        let mut i = 0;
        let args: Vec<&str> = args.iter().map(|s| s.as_ref()).collect();
        // Value of an option given as `-x V`, `-xV`, `--opt V` or `--opt=V`.
        let take = |i: &mut usize, name: &str| -> Result<String, String> {
            let a = args[*i];
            if let Some(v) = a.strip_prefix(&format!("{name}=")) {
                return Ok(v.to_string());
            }
            if a.len() > name.len() && name.len() == 2 {
                return Ok(a[2..].to_string());
            }
            *i += 1;
            args.get(*i)
                .map(|s| s.to_string())
                .ok_or_else(|| format!("EAL option {name} needs a value"))
        };
        while i < args.len() {
            let a = args[i];
            if a == "-l" || (a.starts_with("-l") && !a.starts_with("--")) {
                let v = take(&mut i, "-l")?;
                out.lcores = Some(parse_core_list(&v).map_err(|e| format!("EAL option -l {v}: {e}"))?);
                out.lcores_text = Some(format!("-l {v}"));
            } else if a == "--lcores" || a.starts_with("--lcores=") {
                let v = take(&mut i, "--lcores")?;
                out.lcores = Some(parse_lcores_map(&v).map_err(|e| format!("EAL option --lcores {v}: {e}"))?);
                out.lcores_text = Some(format!("--lcores {v}"));
            } else if a == "-c" || (a.starts_with("-c") && !a.starts_with("--")) {
                let v = take(&mut i, "-c")?;
                out.lcores = Some(parse_core_mask(&v).map_err(|e| format!("EAL option -c {v}: {e}"))?);
                out.lcores_text = Some(format!("-c {v}"));
            } else if a == "--main-lcore" || a.starts_with("--main-lcore=") {
                let v = take(&mut i, "--main-lcore")?;
                out.main_lcore = Some(
                    v.parse()
                        .map_err(|_| format!("EAL option --main-lcore {v}: not a number"))?,
                );
            } else if a == "--vdev" || a.starts_with("--vdev=") {
                out.vdevs.push(take(&mut i, "--vdev")?);
            } else if a == "--no-pci" {
                out.no_pci = true;
            }
            i += 1;
        }
        Ok(out)
    }
}

/// `0-3,5,7-8`.
pub fn parse_core_list(s: &str) -> Result<BTreeSet<u32>, String> {
    let mut set = BTreeSet::new();
    for part in s.split(',') {
        let part = part.trim();
        if part.is_empty() {
            return Err("empty element".into());
        }
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a, b),
            None => (part, part),
        };
        let a: u32 = a
            .trim()
            .parse()
            .map_err(|_| format!("'{part}' is not a core number or range"))?;
        let b: u32 = b
            .trim()
            .parse()
            .map_err(|_| format!("'{part}' is not a core number or range"))?;
        if a > b || b >= 1024 {
            return Err(format!("'{part}' is not a valid range"));
        }
        set.extend(a..=b);
    }
    Ok(set)
}

/// `--lcores`: elements `LCORES[@CPUS]` separated by commas, where LCORES is a number, a range or a
/// parenthesised list. Only the lcore ids matter here.
pub fn parse_lcores_map(s: &str) -> Result<BTreeSet<u32>, String> {
    let mut set = BTreeSet::new();
    let mut depth = 0i32;
    let mut start = 0;
    let bytes = s.as_bytes();
    let mut elems = Vec::new();
    for (i, &c) in bytes.iter().enumerate() {
        match c {
            b'(' => depth += 1,
            b')' => depth -= 1,
            b',' if depth == 0 => {
                elems.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if depth < 0 {
            return Err("unbalanced parentheses".into());
        }
    }
    if depth != 0 {
        return Err("unbalanced parentheses".into());
    }
    elems.push(&s[start..]);
    for e in elems {
        let lc = e.split('@').next().unwrap_or("");
        let lc = lc.trim().trim_start_matches('(').trim_end_matches(')');
        set.extend(parse_core_list(lc)?);
    }
    Ok(set)
}

/// `-c 0x3`.
pub fn parse_core_mask(s: &str) -> Result<BTreeSet<u32>, String> {
    let hex = s.trim().trim_start_matches("0x").trim_start_matches("0X");
    let v = u128::from_str_radix(hex, 16).map_err(|_| "not a hexadecimal core mask".to_string())?;
    if v == 0 {
        return Err("empty core mask".into());
    }
    Ok((0..128).filter(|b| v >> b & 1 == 1).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[u32]) -> Option<BTreeSet<u32>> {
        Some(v.iter().copied().collect())
    }

    #[test]
    fn forms() {
        let a = EalArgs::parse(&["-l", "0-2,5", "--no-pci", "--vdev", "net_null0", "--vdev=net_ring0"]).unwrap();
        assert_eq!(a.lcores, set(&[0, 1, 2, 5]));
        assert_eq!(a.vdevs, vec!["net_null0", "net_ring0"]);
        assert!(a.no_pci);
        assert_eq!(EalArgs::parse(&["-l1"]).unwrap().lcores, set(&[1]));
        assert_eq!(EalArgs::parse(&["-c", "0x6"]).unwrap().lcores, set(&[1, 2]));
        assert_eq!(
            EalArgs::parse(&["--lcores=(0-1)@0,2@1"]).unwrap().lcores,
            set(&[0, 1, 2])
        );
        assert_eq!(EalArgs::parse(&["--lcores", "3"]).unwrap().lcores, set(&[3]));
        let m = EalArgs::parse(&["-l", "0-1", "--main-lcore", "1"]).unwrap();
        assert_eq!(m.main_lcore, Some(1));
        assert_eq!(EalArgs::parse::<&str>(&[]).unwrap().lcores, None);
    }

    #[test]
    fn errors() {
        assert!(EalArgs::parse(&["-l"]).is_err());
        assert!(EalArgs::parse(&["-l", "3-1"]).is_err());
        assert!(EalArgs::parse(&["-l", "a"]).is_err());
        assert!(EalArgs::parse(&["-c", "0"]).is_err());
        assert!(EalArgs::parse(&["--lcores", "(0-1@0"]).is_err());
    }
}
