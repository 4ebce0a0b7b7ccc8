//! `--cpus LIST`: which CPUs the workers are pinned to (`2`, `2,3`, `2-5`, `0,2-3`).

use std::fmt;
use std::str::FromStr;

/// CPU numbers at or above this are refused (the kernel's `cpu_set_t` holds 1024).
const MAX_CPU: usize = 1024;

/// A list of distinct CPU numbers, in the order given: worker `i` runs on the `i`-th.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

impl FromStr for CpuList {
    type Err = String;

    fn from_str(s: &str) -> Result<CpuList, String> {
        let bad = || format!("'{s}' is not a CPU list (expected CPU numbers like 2, 2,3 or 2-5)");
        let number = |t: &str| -> Result<usize, String> {
            let n: usize = t.trim().parse().map_err(|_| bad())?;
            if n >= MAX_CPU {
                return Err(format!("CPU {n} is out of range (at most {})", MAX_CPU - 1));
            }
            Ok(n)
        };
        let mut cpus = Vec::new();
        for item in s.split(',') {
            let (first, last) = match item.split_once('-') {
                Some((a, b)) => (number(a)?, number(b)?),
                None => (number(item)?, number(item)?),
            };
            if first > last {
                return Err(format!("'{}' is not a CPU range (the first CPU comes first)", item.trim()));
            }
            for cpu in first..=last {
                if cpus.contains(&cpu) {
                    return Err(format!("CPU {cpu} is listed twice in '{s}'"));
                }
                cpus.push(cpu);
            }
        }
        Ok(CpuList(cpus))
    }
}

impl fmt::Display for CpuList {
    /// Runs of consecutive CPUs as ranges: `0-3,6`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut i = 0;
        let c = &self.0;
        while i < c.len() {
            let mut j = i;
            while j + 1 < c.len() && c[j + 1] == c[j] + 1 {
                j += 1;
            }
            if i > 0 {
                f.write_str(",")?;
            }
            if j > i {
                write!(f, "{}-{}", c[i], c[j])?
            } else {
                write!(f, "{}", c[i])?
            }
            i = j + 1;
        }
        Ok(())
    }
}

impl CpuList {
    /// Checks the list against the CPUs this process may use and the number of workers.
    pub fn check(&self, allowed: &[usize], workers: usize) -> Result<(), String> {
        if let Some(cpu) = self.0.iter().find(|c| !allowed.contains(c)) {
            return Err(format!(
                "--cpus: CPU {cpu} is not one this process may use (allowed: {})",
                CpuList(allowed.to_vec())
            ));
        }
        if self.0.len() < workers {
            return Err(format!(
                "--cpus lists {} CPU{} for {workers} workers (one CPU per worker)",
                self.0.len(),
                if self.0.len() == 1 { "" } else { "s" }
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_ranges_parse_in_order() {
        assert_eq!("2".parse(), Ok(CpuList(vec![2])));
        assert_eq!("3,1".parse(), Ok(CpuList(vec![3, 1])));
        assert_eq!("0,2-4, 7".parse(), Ok(CpuList(vec![0, 2, 3, 4, 7])));
        assert_eq!(CpuList(vec![0, 2, 3, 4, 7]).to_string(), "0,2-4,7");
        assert_eq!(CpuList(vec![0, 1]).to_string(), "0-1");
    }

    #[test]
    fn bad_lists_are_refused_with_a_reason() {
        for (input, message) in [
            ("", "'' is not a CPU list (expected CPU numbers like 2, 2,3 or 2-5)"),
            ("a", "'a' is not a CPU list (expected CPU numbers like 2, 2,3 or 2-5)"),
            ("1,", "'1,' is not a CPU list (expected CPU numbers like 2, 2,3 or 2-5)"),
            ("-1", "'-1' is not a CPU list (expected CPU numbers like 2, 2,3 or 2-5)"),
            ("3-1", "'3-1' is not a CPU range (the first CPU comes first)"),
            ("1,1", "CPU 1 is listed twice in '1,1'"),
            ("0-2,2", "CPU 2 is listed twice in '0-2,2'"),
            ("4096", "CPU 4096 is out of range (at most 1023)"),
        ] {
            assert_eq!(input.parse::<CpuList>(), Err(message.to_string()), "{input}");
        }
    }

    #[test]
    fn a_list_must_fit_the_process_and_the_workers() {
        let allowed = [0, 1];
        assert_eq!(CpuList(vec![1]).check(&allowed, 1), Ok(()));
        assert_eq!(
            CpuList(vec![2]).check(&allowed, 1),
            Err("--cpus: CPU 2 is not one this process may use (allowed: 0-1)".into())
        );
        assert_eq!(
            CpuList(vec![1]).check(&allowed, 2),
            Err("--cpus lists 1 CPU for 2 workers (one CPU per worker)".into())
        );
    }
}
