//! Small helpers for the wording of messages, so every stage says "1 axis" and "2 axes".

/// `n` followed by the singular or plural noun: `count(1, "axis", "axes")` is "1 axis".
pub fn count(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn singular_and_plural() {
        assert_eq!(super::count(1, "axis", "axes"), "1 axis");
        assert_eq!(super::count(0, "axis", "axes"), "0 axes");
        assert_eq!(super::count(3, "axis", "axes"), "3 axes");
    }
}
