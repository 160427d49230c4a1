//! "Did you mean": the nearest known name to a misspelt one, by edit distance, for diagnostics
//! about unknown functions, names, dims and indices.

/// The candidate closest to `name`, if it is close enough to be a likely typo: at most one
/// edit per three characters, and one for a name of two (`qq` for `q`, as rustc allows), but
/// none for a one-letter name, which is one edit from every other one-letter dim or index. A
/// candidate that differs only in case always qualifies (dims are case-sensitive). Two
/// different candidates equally close give no suggestion rather than an arbitrary one.
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let length = name.chars().count();
    let limit = if length < 2 { 0 } else { length.max(3) / 3 };
    let mut best: Option<(usize, &'a str)> = None;
    let mut tied = false;
    for c in candidates {
        if c == name {
            continue;
        }
        let d = if c.eq_ignore_ascii_case(name) {
            0
        } else {
            edit_distance(name, c)
        };
        if d > limit {
            continue;
        }
        match best {
            Some((bd, b)) if d == bd && b != c => tied = true,
            Some((bd, _)) if d >= bd => {}
            _ => {
                best = Some((d, c));
                tied = false;
            }
        }
    }
    if tied { None } else { best.map(|(_, c)| c) }
}

/// Levenshtein distance, counting a swap of two neighbouring characters as one edit (the most
/// common typo: `sofmtax`).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Three rows of the dynamic programme: two back (for swaps), one back, current.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut current = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (previous[j] + 1)
                .min(current[j - 1] + 1)
                .min(previous[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(before[j - 2] + 1);
            }
            current[j] = d;
        }
        before = std::mem::replace(&mut previous, current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("sofmax", "softmax"), 1);
        assert_eq!(edit_distance("sotfmax", "softmax"), 1);
        assert_eq!(edit_distance("", "exp"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn suggestions_are_close_or_absent() {
        let builtins = ["softmax", "sigmoid", "exp", "log", "sqrt"];
        assert_eq!(closest("sofmax", builtins), Some("softmax"));
        assert_eq!(closest("sqr", builtins), Some("sqrt"));
        assert_eq!(closest("sparsemax", builtins), None);
        assert_eq!(closest("d", ["B", "D", "S"]), Some("D"));
        assert_eq!(closest("D", ["B", "H", "S"]), None);
        assert_eq!(closest("qq", ["q", "k", "v"]), Some("q"));
        assert_eq!(
            closest("kv", ["q", "k", "v"]),
            None,
            "as close to k as to v"
        );
        assert_eq!(closest("sofmax", ["softmax", "softmax"]), Some("softmax"));
        assert_eq!(
            closest("exp", builtins),
            None,
            "an exact match is no suggestion"
        );
    }
}
