//! The top-level fields of a user record: what `inc` and `exc` name.

/// A top-level field of a user record, as named by `inc` / `exc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// `gender`
    Gender,
    /// `name`
    Name,
    /// `location`
    Location,
    /// `email`
    Email,
    /// `login` (holds `uuid`, the record id, and the credentials)
    Login,
    /// `registered`
    Registered,
    /// `dob`
    Dob,
    /// `phone`
    Phone,
    /// `cell`
    Cell,
    /// `id`
    Id,
    /// `picture`
    Picture,
    /// `nat`
    Nat,
}

impl Field {
    /// All fields, in the order `inc` defaults to.
    pub const ALL: [Field; 12] = [
        Field::Gender,
        Field::Name,
        Field::Location,
        Field::Email,
        Field::Login,
        Field::Registered,
        Field::Dob,
        Field::Phone,
        Field::Cell,
        Field::Id,
        Field::Picture,
        Field::Nat,
    ];

    /// The key in the JSON record, as `inc` / `exc` name it.
    pub const fn name(self) -> &'static str {
        match self {
            Field::Gender => "gender",
            Field::Name => "name",
            Field::Location => "location",
            Field::Email => "email",
            Field::Login => "login",
            Field::Registered => "registered",
            Field::Dob => "dob",
            Field::Phone => "phone",
            Field::Cell => "cell",
            Field::Id => "id",
            Field::Picture => "picture",
            Field::Nat => "nat",
        }
    }

    /// Every field's [`name`](Self::name), in the order of [`ALL`](Self::ALL): the list a
    /// configuration names fields from (`inc`, `exc`).
    pub const NAMES: [&'static str; 12] = {
        let mut names = [""; 12];
        let mut i = 0;
        while i < names.len() {
            names[i] = Field::ALL[i].name();
            i += 1;
        }
        names
    };

    /// The field named `name` (exact, lowercase, as the API spells it).
    pub fn from_name(name: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_all_and_parse_back() {
        assert_eq!(Field::NAMES.len(), Field::ALL.len());
        for (field, name) in Field::ALL.into_iter().zip(Field::NAMES) {
            assert_eq!(field.name(), name);
            assert_eq!(Field::from_name(name), Some(field));
        }
        assert_eq!(Field::from_name("Login"), None);
    }
}
