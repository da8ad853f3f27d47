//! Closed vocabularies of the control plane, with the exact codes the reference Exchange uses on the wire.

/// Organization type codes and labels (jhe-compat §3.2), in the reference's order.
pub const ORGANIZATION_TYPES: &[(&str, &str)] = &[
    ("root", "ROOT"),
    ("prov", "Healthcare Provider"),
    ("dept", "Hospital Department"),
    ("team", "Organizational team"),
    ("govt", "Government"),
    ("ins", "Insurance Company"),
    ("pay", "Payer"),
    ("edu", "Educational Institute"),
    ("reli", "Religious Institution"),
    ("crs", "Clinical Research Sponsor"),
    ("cg", "Community Group"),
    ("bus", "Non-Healthcare Business or Corporation"),
    ("other", "Other"),
    ("laboratory", "Laboratory"),
    ("imaging", "Imaging Center"),
    ("pharmacy", "Pharmacy"),
    ("health-information-network", "Health Information Network"),
    ("health-data-aggregator", "Health Data Aggregator"),
];

/// The label of an organization type code, if the code is known.
pub fn organization_type_label(code: &str) -> Option<&'static str> {
    ORGANIZATION_TYPES.iter().find(|(c, _)| *c == code).map(|(_, label)| *label)
}

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parses the wire code; the error lists the accepted codes.
            pub fn parse(code: &str) -> Result<Self, String> {
                match code {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!(
                        "`{other}` is not a valid choice; expected one of {}",
                        [$($text),+].join(", ")
                    )),
                }
            }
        }
    };
}

string_enum!(
    /// `users.user_type`
    UserType { Patient = "patient", Practitioner = "practitioner" }
);
string_enum!(
    /// `data_sources.type`
    DataSourceType { MedicalDevice = "medical_device", PersonalDevice = "personal_device", PatientApp = "patient_app" }
);
string_enum!(
    /// `patient_invitations.status`
    InvitationStatus {
        Issued = "issued",
        Reissued = "reissued",
        Redeemed = "redeemed",
        Cancelled = "cancelled",
        Expired = "expired",
    }
);
string_enum!(
    /// `settings.value_type`
    SettingValueType { String = "string", Int = "int", Bool = "bool", Float = "float", Json = "json" }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabularies_round_trip() {
        for t in DataSourceType::ALL {
            assert_eq!(DataSourceType::parse(t.as_str()), Ok(*t));
        }
        assert!(DataSourceType::parse("phone").unwrap_err().contains("personal_device"));
        assert_eq!(organization_type_label("edu"), Some("Educational Institute"));
        assert_eq!(organization_type_label("nope"), None);
        assert_eq!(ORGANIZATION_TYPES.len(), 18);
    }
}
