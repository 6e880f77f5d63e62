#[derive(serde::Deserialize, Debug)]
#[allow(dead_code)]
struct P {
    name: String,
    source: S,
}
#[derive(serde::Deserialize, Debug)]
#[allow(dead_code)]
struct S {
    kind: String,
    path: Option<String>,
}
#[test]
fn scratch() {
    for t in [
        "[source]\nkind=\"files\"\npath = \"/x\"\n",
        "name = \"x\"\n[source]\npath = \"/x\"\n",
        "[source]\npath = \"/x\"\n",
    ] {
        let e = toml::from_str::<P>(t).unwrap_err();
        println!("{:?} len {} -> {:?} {}", t, t.len(), e.span(), e.message());
    }
}
