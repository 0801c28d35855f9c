use super::*;

fn field(kind: FieldKind) -> FormField {
    FormField::new("x", kind, "")
}

#[test]
fn form_text_becomes_typed_config_values() {
    assert_eq!(
        field_value(&field(FieldKind::Integer), " 140 "),
        Ok(Some(Value::from(140)))
    );
    assert_eq!(
        field_value(&field(FieldKind::Number), "6519.5"),
        Ok(Some(Value::from(6519.5)))
    );
    assert_eq!(
        field_value(&field(FieldKind::List), "other, single peak,"),
        Ok(Some(serde_json::json!(["other", "single peak"])))
    );
    assert_eq!(
        field_value(&field(FieldKind::List), r#"["sh", "-c", "echo a, b"]"#),
        Ok(Some(serde_json::json!(["sh", "-c", "echo a, b"])))
    );
    assert_eq!(
        field_value(&field(FieldKind::Bool), "on"),
        Ok(Some(Value::Bool(true)))
    );
    assert_eq!(
        field_value(&field(FieldKind::Bool), ""),
        Ok(Some(Value::Bool(false)))
    );
    assert_eq!(field_value(&field(FieldKind::Text), ""), Ok(None));
}

#[test]
fn a_wrong_field_is_named_with_its_complaint() {
    assert!(
        field_value(&field(FieldKind::Integer), "1.5")
            .unwrap_err()
            .contains("whole")
    );
    assert!(field_value(&field(FieldKind::Number), "inf").is_err());
    assert_eq!(
        field_value(&field(FieldKind::Text).required(), " "),
        Err("required".to_string())
    );
    let fields = [
        FormField::new("a", FieldKind::Integer, ""),
        FormField::new("b", FieldKind::Integer, ""),
    ];
    let values = HashMap::from([
        ("cfg.a".to_string(), "x".to_string()),
        ("cfg.b".to_string(), "2".to_string()),
    ]);
    let errors = config_from_fields(&fields, &values).unwrap_err();
    assert_eq!(errors.keys().collect::<Vec<_>>(), ["a"]);
}

#[test]
fn a_config_error_goes_next_to_its_field() {
    let e = ApiError::invalid("config.wave_point_count", "too small");
    assert_eq!(
        field_errors(e, false).unwrap()["wave_point_count"],
        "too small"
    );
    let e = ApiError::invalid("config.wave_point_count", "too small");
    assert_eq!(field_errors(e, true).unwrap()["config_json"], "too small");
    let e = ApiError::invalid("label", "too long");
    assert_eq!(field_errors(e, false).unwrap()["label"], "too long");
}

#[test]
fn form_text_of_a_list_reads_back_as_the_same_list() {
    assert_eq!(form_text(&serde_json::json!(["a", "b c"])), "a, b c");
    assert_eq!(form_text(&serde_json::json!(3)), "3");
    let list = FormField::new("x", FieldKind::List, "");
    for v in [
        serde_json::json!(["sh", "-c", "echo a, b"]),
        serde_json::json!(["a", "b c"]),
    ] {
        assert_eq!(field_value(&list, &form_text(&v)), Ok(Some(v)));
    }
}
