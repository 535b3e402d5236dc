//! CPU lists as `taskset -c` writes them (`0-7`, `0,2,4-6`), the default split of this
//! process's CPUs between server and load generator, and the server sizes to measure.
//!
//! Pure functions: the affinity mask comes in as an argument. Must not depend on processes or
//! sockets.

/// Highest CPU number a list may name plus one (glibc's `CPU_SETSIZE`).
const MAX_CPUS: usize = 1024;

/// Parses a CPU list: comma-separated CPUs and inclusive ranges, kept in the order given
/// (the server's first N cores are the first N listed). Names the flag in its errors.
pub fn parse_list(flag: &str, s: &str) -> Result<Vec<usize>, String> {
    let mut cpus = Vec::new();
    for item in s.split(',').map(str::trim) {
        let number = |t: &str| {
            t.trim()
                .parse::<usize>()
                .ok()
                .filter(|&n| n < MAX_CPUS)
                .ok_or_else(|| {
                    format!(
                        "{flag}: `{t}` in `{s}` is not a CPU number (0..{})",
                        MAX_CPUS - 1
                    )
                })
        };
        let (first, last) = match item.split_once('-') {
            Some((a, b)) => (number(a)?, number(b)?),
            None if item.is_empty() => {
                return Err(format!(
                    "{flag}: `{s}` has an empty item (write e.g. 0-3 or 0,2,4)"
                ))
            }
            None => {
                let n = number(item)?;
                (n, n)
            }
        };
        if first > last {
            return Err(format!("{flag}: range `{item}` runs backwards"));
        }
        for cpu in first..=last {
            if cpus.contains(&cpu) {
                return Err(format!("{flag}: CPU {cpu} is listed twice in `{s}`"));
            }
            cpus.push(cpu);
        }
    }
    Ok(cpus)
}

/// Writes a CPU list compactly, runs of consecutive CPUs as ranges: `[0,1,2,3,8]` → `0-3,8`.
pub fn format_list(cpus: &[usize]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        parts.push(if j > i {
            format!("{}-{}", cpus[i], cpus[j])
        } else {
            cpus[i].to_string()
        });
        i = j + 1;
    }
    parts.join(",")
}

/// Checks that every CPU of a list is in this process's affinity mask.
pub fn check_allowed(flag: &str, cpus: &[usize], allowed: &[usize]) -> Result<(), String> {
    match cpus.iter().find(|c| !allowed.contains(c)) {
        None => Ok(()),
        Some(c) => Err(format!(
            "{flag}: CPU {c} is not available to this process (it may run on {})",
            format_list(allowed)
        )),
    }
}

/// The default split of the allowed CPUs: the first half (rounded up) serves, the rest
/// drives the load; a single CPU does both.
pub fn default_split(allowed: &[usize]) -> (Vec<usize>, Vec<usize>) {
    if allowed.len() < 2 {
        return (allowed.to_vec(), allowed.to_vec());
    }
    let half = allowed.len().div_ceil(2);
    (allowed[..half].to_vec(), allowed[half..].to_vec())
}

/// The default server sizes: powers of two up to `n`, then `n` itself.
pub fn default_sizes(n: usize) -> Vec<usize> {
    let mut sizes: Vec<usize> = std::iter::successors(Some(1usize), |s| s.checked_mul(2))
        .take_while(|&s| s <= n)
        .collect();
    if n > 0 && sizes.last() != Some(&n) {
        sizes.push(n);
    }
    sizes
}

/// Parses `--cores` (`1,2,4,8`): each size between 1 and the number of server CPUs, no
/// repeats; returned ascending.
pub fn parse_sizes(s: &str, server_cpus: usize) -> Result<Vec<usize>, String> {
    let mut sizes = Vec::new();
    for item in s.split(',').map(str::trim) {
        let n: usize = item
            .parse()
            .map_err(|_| format!("--cores: `{item}` in `{s}` is not a whole number"))?;
        if n == 0 || n > server_cpus {
            return Err(format!(
                "--cores: {n} is outside 1..={server_cpus} (the number of --server-cores)"
            ));
        }
        if sizes.contains(&n) {
            return Err(format!("--cores: {n} is listed twice"));
        }
        sizes.push(n);
    }
    sizes.sort_unstable();
    Ok(sizes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_in_the_order_given_with_ranges_expanded() {
        assert_eq!(
            parse_list("--x", "0-7").unwrap(),
            (0..8).collect::<Vec<_>>()
        );
        assert_eq!(parse_list("--x", "3").unwrap(), [3]);
        assert_eq!(
            parse_list("--x", " 8-9, 0 ,4-5").unwrap(),
            [8, 9, 0, 4, 5],
            "order is kept: the first N listed are the first N used"
        );
        assert_eq!(parse_list("--x", "1023").unwrap(), [1023]);
    }

    #[test]
    fn bad_lists_name_the_flag_and_the_problem() {
        for (bad, says) in [
            ("", "empty item"),
            ("0,,1", "empty item"),
            ("a", "not a CPU number"),
            ("1-", "not a CPU number"),
            ("-1", "not a CPU number"),
            ("1024", "not a CPU number"),
            ("5-3", "backwards"),
            ("0-3,2", "CPU 2 is listed twice"),
        ] {
            let e = parse_list("--server-cores", bad).unwrap_err();
            assert!(e.starts_with("--server-cores: "), "{e}");
            assert!(e.contains(says), "`{bad}`: {e}");
        }
    }

    #[test]
    fn lists_format_back_compactly() {
        assert_eq!(format_list(&[0, 1, 2, 3, 8]), "0-3,8");
        assert_eq!(format_list(&[5]), "5");
        assert_eq!(format_list(&[8, 9, 0, 1]), "8-9,0-1");
        assert_eq!(format_list(&[0, 2, 4]), "0,2,4");
        assert_eq!(format_list(&[]), "");
        for s in ["0-15", "0,2-3,7", "8-15,0-7"] {
            assert_eq!(format_list(&parse_list("--x", s).unwrap()), s);
        }
    }

    #[test]
    fn cpus_beyond_the_affinity_mask_are_refused() {
        let allowed = [0, 1];
        assert!(check_allowed("--client-cores", &[1, 0], &allowed).is_ok());
        let e = check_allowed("--server-cores", &[0, 1, 2, 3], &allowed).unwrap_err();
        assert_eq!(
            e,
            "--server-cores: CPU 2 is not available to this process (it may run on 0-1)"
        );
    }

    #[test]
    fn the_default_split_gives_the_server_the_first_half() {
        let all: Vec<usize> = (0..16).collect();
        let (server, client) = default_split(&all);
        assert_eq!(server, (0..8).collect::<Vec<_>>());
        assert_eq!(client, (8..16).collect::<Vec<_>>());
        assert_eq!(default_split(&[0, 1, 2]), (vec![0, 1], vec![2]));
        assert_eq!(default_split(&[3]), (vec![3], vec![3]));
    }

    #[test]
    fn default_sizes_are_powers_of_two_then_the_whole() {
        assert_eq!(default_sizes(1), [1]);
        assert_eq!(default_sizes(2), [1, 2]);
        assert_eq!(default_sizes(8), [1, 2, 4, 8]);
        assert_eq!(default_sizes(6), [1, 2, 4, 6]);
        assert_eq!(default_sizes(16), [1, 2, 4, 8, 16]);
        assert!(default_sizes(0).is_empty());
    }

    #[test]
    fn sizes_are_checked_against_the_server_cpus_and_sorted() {
        assert_eq!(parse_sizes("8,1,4,2", 8).unwrap(), [1, 2, 4, 8]);
        assert_eq!(parse_sizes("3", 4).unwrap(), [3]);
        for (bad, says) in [
            ("0", "outside 1..=8"),
            ("16", "outside 1..=8"),
            ("2,2", "listed twice"),
            ("two", "not a whole number"),
            ("", "not a whole number"),
        ] {
            let e = parse_sizes(bad, 8).unwrap_err();
            assert!(
                e.starts_with("--cores: ") && e.contains(says),
                "`{bad}`: {e}"
            );
        }
    }
}
