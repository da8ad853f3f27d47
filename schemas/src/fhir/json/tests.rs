use serde_json::Value;

use super::*;

fn tree(text: &str) -> Doc<'_> {
    parse(text.as_bytes(), Plan::Tree).unwrap()
}

#[test]
fn snake_case_keys_are_read_as_camel_case() {
    assert_eq!(canonical_key("value_attachment"), "valueAttachment");
    assert_eq!(canonical_key("effective_date_time"), "effectiveDateTime");
    assert_eq!(canonical_key("valueAttachment"), "valueAttachment");
    assert_eq!(canonical_key("_status"), "_status");
    assert_eq!(canonical_key("_effective_date_time"), "_effectiveDateTime");
    assert_eq!(canonical_key("a__b_"), "aB");
}

#[test]
fn element_checks_names_types_and_duplicates() {
    let doc = tree(r#"{"system": "s", "code": "c", "_code": {"extension": []}, "display": null}"#);
    let coding = Element::parse(doc.root(), Path::Root("Coding"), CODING).unwrap();
    assert_eq!(coding.str("code"), Some("c"));
    assert!(coding.get("display").is_none());

    let check = |text: &str, definition| {
        Element::parse(tree(text).root(), Path::Root("X"), definition).map(drop).map_err(|error| error.to_string())
    };
    assert_eq!(check(r#"{"sytem": "s"}"#, CODING).unwrap_err(), "X.sytem: is not an element of this FHIR R5 type");
    assert_eq!(check(r#"{"code": 5}"#, CODING).unwrap_err(), "X.code: expected a string");
    assert!(check(r#"{"userSelected": true, "user_selected": false}"#, CODING).unwrap_err().contains("given twice"));
    assert!(check(r#"{"_period": {}}"#, IDENTIFIER).is_err());
}

/// A key given twice keeps its first position and its last value, as in a `serde_json::Value` map: `{"code": 5,
/// "display": 1, "code": "c"}` fails on `display`, not on the first `code`.
#[test]
fn repeated_keys_keep_the_first_position_and_the_last_value() {
    let check = |text: &str| {
        Element::parse(tree(text).root(), Path::Root("X"), CODING)
            .map(|e| e.str("code").map(str::to_owned))
            .map_err(|e| e.to_string())
    };
    assert_eq!(check(r#"{"code": 5, "display": 1, "code": "c"}"#).unwrap_err(), "X.display: expected a string");
    assert_eq!(check(r#"{"code": "a", "code": "b"}"#).unwrap(), Some("b".to_owned()));
    assert_eq!(check(r#"{"code": "a", "code": null}"#).unwrap(), None);
    // past the point where keys are indexed rather than scanned
    let many: Vec<String> = (0..40).map(|i| format!(r#""k{i}": {i}"#)).collect();
    let text = format!(r#"{{{}, "k3": "three", "k39": null}}"#, many.join(", "));
    let doc = tree(&text);
    let root = doc.root();
    let members = root.members().unwrap();
    assert_eq!(members.len(), 40);
    assert_eq!(root.raw_get("k3").map(|n| n.node()), Some(&Node::Str("three".into())));
    assert_eq!(root.raw_get("k39").map(|n| n.node()), Some(&Node::Null));
    assert_eq!(members[3].raw, "k3");
}

/// Numbers are classed exactly as `serde_json::Value` classes them (an `i64`/`u64` or an `f64`).
#[test]
fn numbers_are_classed_as_serde_json_classes_them() {
    for text in [
        "0",
        "-0",
        "1",
        "-1",
        "18446744073709551615",
        "18446744073709551616",
        "-9223372036854775808",
        "-9223372036854775809",
        "1.0",
        "1e2",
        "-0.0",
        "1E-2",
        "123456789012345678901234567890",
    ] {
        let value: Value = serde_json::from_str(text).unwrap();
        let doc = tree(text);
        let expected = if value.is_i64() || value.is_u64() { Node::Int } else { Node::Float };
        assert_eq!(doc.root().node(), &expected, "{text}");
    }
    for text in ["1e400", "-1e400", "01", "1.", ".5", "+1", "NaN"] {
        let value = serde_json::from_str::<Value>(text).unwrap_err().to_string();
        assert_eq!(parse(text.as_bytes(), Plan::Tree).unwrap_err().to_string(), value, "{text}");
        assert_eq!(check_json(text).unwrap_err().to_string(), value, "{text}");
    }
}

/// Whatever `Value` refuses is refused with the same message (and position), kept or opaque.
#[test]
fn syntax_errors_are_serde_jsons() {
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let cases = [
        "",
        " ",
        "{",
        "[1,]",
        r#"{"a":1,}"#,
        r#"{"a" 1}"#,
        r#"{1: 2}"#,
        r#""\u"#,
        r#""\ud800""#,
        r#""\x""#,
        "\"a\u{1}\"",
        "[1] x",
        "tru",
        "nul",
        r#"{"a": [1, {"b": 1e999}]}"#,
        &deep,
        "\"\\uDC00\"",
    ];
    for text in cases {
        let expected = serde_json::from_slice::<Value>(text.as_bytes()).unwrap_err().to_string();
        for plan in [Plan::Tree, Plan::Opaque, Plan::Fields(&[("a", Plan::Tree)])] {
            assert_eq!(parse(text.as_bytes(), plan).unwrap_err().to_string(), expected, "{text:?}");
        }
        assert_eq!(check_json(text).unwrap_err().to_string(), expected, "{text:?}");
    }
    // invalid UTF-8 inside and outside strings
    for bytes in [&b"\"\xff\""[..], b"\xff", b"{\"a\xc3\": 1}"] {
        let expected = serde_json::from_slice::<Value>(bytes).unwrap_err().to_string();
        assert_eq!(parse(bytes, Plan::Tree).unwrap_err().to_string(), expected);
    }
    // 127 levels are fine, as for Value
    let deep_ok = format!("{}{}", "[".repeat(127), "]".repeat(127));
    assert!(serde_json::from_str::<Value>(&deep_ok).is_ok());
    assert!(parse(deep_ok.as_bytes(), Plan::Opaque).is_ok() && check_json(&deep_ok).is_ok());
}

#[test]
fn plans_keep_only_what_they_name() {
    const PLAN: Plan = Plan::Fields(&[("kept", Plan::Tree), ("items", Plan::Tree)]);
    let text =
        r#"{"kept": {"a": "x\ny"}, "dropped": {"a": [1]}, "items": [{"b": 2}], "s": "t", "value_attachment": []}"#;
    let doc = parse(text.as_bytes(), PLAN).unwrap();
    let node = |key: &str| doc.root().raw_get(key).map(|node| node.node().clone());
    let kept = doc.root().raw_get("kept").and_then(|kept| kept.raw_get("a")).map(|node| node.node().clone());
    assert_eq!(kept, Some(Node::Str("x\ny".into())));
    assert_eq!(node("dropped"), Some(Node::Opaque(Opaque::Obj)));
    assert_eq!(doc.root().raw_get("items").and_then(|items| items.as_array()).map(|items| items.len()), Some(1));
    assert_eq!(node("s"), Some(Node::Opaque(Opaque::Str)));
    assert_eq!(node("value_attachment"), Some(Node::Opaque(Opaque::Arr)));
    // a kept string without escapes borrows from the body
    let doc = tree(r#"{"a": "plain", "b": "esc\u0061ped"}"#);
    assert!(matches!(doc.root().raw_get("a").map(|n| n.node()), Some(Node::Str(Cow::Borrowed("plain")))));
    assert!(
        matches!(doc.root().raw_get("b").map(|n| n.node()), Some(Node::Str(Cow::Owned(text))) if text == "escaped")
    );
}

#[test]
fn paths_are_formatted_on_demand() {
    let root = Path::Root("Bundle");
    let entry = Path::Key(&root, "entry");
    let item = Path::Index(&entry, 3);
    assert_eq!(Path::Key(&item, "request").to_string(), "Bundle.entry[3].request");
}

#[test]
fn quoted_values_are_cut() {
    assert_eq!(quoted("Device/1"), "\"Device/1\"");
    assert_eq!(quoted(&"é".repeat(100)).chars().count(), 80 + 3);
}

/// Nested objects and arrays keep their own members and items (nested ones are finished, and stored, first).
#[test]
fn nested_containers_keep_their_own_members() {
    let doc = tree(r#"{"a": {"b": [1, {"c": "d", "e": [true, "f"]}, "g"], "h": null}, "i": [[], {}], "j": "k"}"#);
    let root = doc.root();
    let a = root.raw_get("a").unwrap();
    let b = a.raw_get("b").unwrap().as_array().unwrap();
    let b: Vec<NodeRef<'_>> = b.iter().collect();
    assert_eq!(b.len(), 3);
    assert_eq!(b[0].node(), &Node::Int);
    assert_eq!(b[1].raw_get("c").and_then(|c| c.as_str()), Some("d"));
    let e: Vec<&Node<'_>> = b[1].raw_get("e").unwrap().as_array().unwrap().iter().map(|n| n.node()).collect();
    assert_eq!(e, [&Node::Bool, &Node::Str("f".into())]);
    assert_eq!(b[2].as_str(), Some("g"));
    assert!(a.raw_get("h").unwrap().is_null());
    let i = root.raw_get("i").unwrap().as_array().unwrap();
    assert_eq!(i.len(), 2);
    assert_eq!(root.raw_get("j").and_then(|j| j.as_str()), Some("k"));
    assert_eq!(root.members().map(<[Member<'_>]>::len), Some(3));
}
