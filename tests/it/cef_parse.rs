//! A CEF reader written from the CEF specification, sharing no code with the encoder: the
//! header is seven `|`-separated fields (`\|` and `\\` escaped), the extension is `key=value`
//! pairs separated by spaces, where a key is the word before an unescaped `=` and values escape
//! `\\`, `\=`, `\n` and `\r`.

#[derive(Debug)]
pub struct Cef {
    /// `CEF:0`, vendor, product, version, signature id, name, severity.
    pub header: Vec<String>,
    pub ext: Vec<(String, String)>,
}

impl Cef {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.ext.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

pub fn parse(line: &str) -> Result<Cef, String> {
    if line.contains(['\n', '\r']) {
        return Err("raw line break inside the event".into());
    }
    let chars: Vec<char> = line.chars().collect();
    let mut header = Vec::new();
    let mut cur = String::new();
    let mut i = 0;
    while header.len() < 7 {
        let c = *chars.get(i).ok_or("header ended early")?;
        match c {
            '\\' => {
                let n = *chars.get(i + 1).ok_or("dangling backslash in header")?;
                if n != '|' && n != '\\' {
                    return Err(format!("bad header escape \\{n}"));
                }
                cur.push(n);
                i += 2;
            }
            '|' => {
                header.push(std::mem::take(&mut cur));
                i += 1;
            }
            _ => {
                cur.push(c);
                i += 1;
            }
        }
    }
    let ext: Vec<char> = chars[i..].to_vec();
    // Positions of unescaped '='.
    let mut eqs = Vec::new();
    let mut j = 0;
    while j < ext.len() {
        match ext[j] {
            '\\' => j += 2,
            '=' => {
                eqs.push(j);
                j += 1
            }
            _ => j += 1,
        }
    }
    let is_key_char = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut keys = Vec::new(); // (key start, '=' position)
    for &eq in &eqs {
        let mut s = eq;
        while s > 0 && is_key_char(ext[s - 1]) {
            s -= 1;
        }
        if s == eq || (s > 0 && ext[s - 1] != ' ') {
            return Err(format!("unescaped '=' inside a value at {eq}"));
        }
        keys.push((s, eq));
    }
    let mut pairs = Vec::new();
    for (n, &(s, eq)) in keys.iter().enumerate() {
        let end = keys.get(n + 1).map(|&(next, _)| next - 1).unwrap_or(ext.len());
        let key: String = ext[s..eq].iter().collect();
        let mut value = String::new();
        let mut k = eq + 1;
        while k < end {
            if ext[k] == '\\' {
                let e = *ext.get(k + 1).ok_or("dangling backslash in value")?;
                value.push(match e {
                    '\\' => '\\',
                    '=' => '=',
                    'n' => '\n',
                    'r' => '\r',
                    other => return Err(format!("bad value escape \\{other}")),
                });
                k += 2;
            } else {
                value.push(ext[k]);
                k += 1;
            }
        }
        pairs.push((key, value));
    }
    Ok(Cef { header, ext: pairs })
}

#[test]
fn reader_reads_the_spec_examples() {
    let c = parse(r"CEF:0|Security|threat\|manager|1.0|100|worm successfully stopped|10|src=10.0.0.1 dst=2.1.2.2 msg=a\=b c\\d\nnext spt=1232").unwrap();
    assert_eq!(c.header[2], "threat|manager");
    assert_eq!(c.get("msg"), Some("a=b c\\d\nnext"));
    assert_eq!(c.get("spt"), Some("1232"));
    assert!(
        parse("CEF:0|a|b|c|d|e|1|msg=x=y").is_err(),
        "an unescaped = in a value is rejected"
    );
}
