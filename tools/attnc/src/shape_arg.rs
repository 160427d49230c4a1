//! Parsing `--shape B=2,H=4,S=128,D=64`.

use std::collections::BTreeMap;

pub fn parse_shape(text: &str) -> Result<BTreeMap<String, i64>, String> {
    let mut dims = BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = part
            .split_once('=')
            .ok_or_else(|| format!("`{part}` is not NAME=VALUE"))?;
        let value: i64 = value
            .trim()
            .parse()
            .map_err(|_| format!("`{}` in `{part}` is not an integer", value.trim()))?;
        if dims.insert(name.trim().to_string(), value).is_some() {
            return Err(format!("`{}` is given twice", name.trim()));
        }
    }
    Ok(dims)
}

#[cfg(test)]
mod tests {
    use super::parse_shape;

    #[test]
    fn parses_and_rejects() {
        let d = parse_shape("B=2, H=4,S=128").unwrap();
        assert_eq!(d["B"], 2);
        assert_eq!(d["S"], 128);
        assert!(parse_shape("B2").is_err());
        assert!(parse_shape("B=x").is_err());
        assert!(parse_shape("B=1,B=2").is_err());
    }
}
