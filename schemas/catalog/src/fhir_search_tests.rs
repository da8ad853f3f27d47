use super::*;

fn sql_of(kind: FhirResourceKind, query: &FhirQuery) -> String {
    let mut sql = QueryBuilder::new("");
    push_conditions(&mut sql, kind, query).unwrap();
    sql.sql().as_str().to_owned()
}

#[test]
fn access_and_filters_are_anded_with_bound_values() {
    let query = FhirQuery {
        access: FhirAccess::Organizations(vec![20003]),
        filters: vec![
            FhirFilter::Study(30001),
            FhirFilter::Text { field: TextField::Name, any_of: vec![TextMatch::StartsWith("pe".into())] },
        ],
        sort: vec![],
    };
    let text = sql_of(FhirResourceKind::Patient, &query);
    assert!(text.contains("a.organization_id = ANY($1)"), "{text}");
    assert!(text.contains("sp.study_id = $2"), "{text}");
    assert!(text.contains("t.name_family ILIKE $3 OR t.name_given ILIKE $4"), "{text}");
}

#[test]
fn inapplicable_filters_are_refused() {
    let query = FhirQuery {
        access: FhirAccess::Everything,
        filters: vec![FhirFilter::Text { field: TextField::Family, any_of: vec![] }],
        sort: vec![],
    };
    let mut sql = QueryBuilder::new("");
    assert!(push_conditions(&mut sql, FhirResourceKind::Group, &query).is_err());
    assert!(order_by(FhirResourceKind::Device, &[SortKey { field: SortField::BirthDate, descending: true }]).is_err());
}

#[test]
fn order_ends_with_the_id() {
    assert_eq!(
        order_by(FhirResourceKind::Patient, &[]).unwrap(),
        "t.name_family ASC NULLS LAST, t.name_given ASC NULLS LAST, t.id ASC"
    );
    assert_eq!(
        order_by(FhirResourceKind::Group, &[SortKey { field: SortField::LastUpdated, descending: true }]).unwrap(),
        "t.last_updated DESC NULLS LAST, t.id ASC"
    );
    assert_eq!(
        order_by(FhirResourceKind::Device, &[SortKey { field: SortField::Id, descending: true }]).unwrap(),
        "t.id DESC NULLS LAST"
    );
}

#[test]
fn like_wildcards_match_literally() {
    assert_eq!(like_literal(r"50%_a\b"), r"50\%\_a\\b");
}
