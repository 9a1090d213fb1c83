//! Embedded word lists for the emulated nationalities.
//!
//! Written for the emulator (not copied from the reference data): a few dozen entries per list
//! is enough to make records look plausible and keep the binary small. Every entry is plain
//! text that needs no JSON escaping (a unit test checks it), which lets the writer copy them
//! verbatim.

/// Word lists of one nationality.
pub(super) struct NatData {
    pub male_first: &'static [&'static str],
    pub female_first: &'static [&'static str],
    pub last: &'static [&'static str],
    pub streets: &'static [&'static str],
    pub cities: &'static [&'static str],
    pub states: &'static [&'static str],
}

pub(super) const FEMALE_TITLES: &[&str] = &["Ms", "Mrs", "Miss", "Ms", "Mrs"];

/// `(offset, description)`, shared by all nationalities like in the real API.
pub(super) const TIMEZONES: &[(&str, &str)] = &[
    ("-12:00", "Eniwetok, Kwajalein"),
    ("-11:00", "Midway Island, Samoa"),
    ("-10:00", "Hawaii"),
    ("-9:00", "Alaska"),
    ("-8:00", "Pacific Time (US & Canada)"),
    ("-7:00", "Mountain Time (US & Canada)"),
    ("-6:00", "Central Time (US & Canada), Mexico City"),
    ("-5:00", "Eastern Time (US & Canada), Bogota, Lima"),
    ("-4:00", "Atlantic Time (Canada), Caracas, La Paz"),
    ("-3:30", "Newfoundland"),
    ("-3:00", "Brazil, Buenos Aires, Georgetown"),
    ("-2:00", "Mid-Atlantic"),
    ("-1:00", "Azores, Cape Verde Islands"),
    ("0:00", "Western Europe Time, London, Lisbon, Casablanca"),
    ("+1:00", "Brussels, Copenhagen, Madrid, Paris"),
    ("+2:00", "Kaliningrad, South Africa"),
    ("+3:00", "Baghdad, Riyadh, Moscow, St. Petersburg"),
    ("+3:30", "Tehran"),
    ("+4:00", "Abu Dhabi, Muscat, Baku, Tbilisi"),
    ("+4:30", "Kabul"),
    ("+5:00", "Ekaterinburg, Islamabad, Karachi, Tashkent"),
    ("+5:30", "Bombay, Calcutta, Madras, New Delhi"),
    ("+5:45", "Kathmandu"),
    ("+6:00", "Almaty, Dhaka, Colombo"),
    ("+7:00", "Bangkok, Hanoi, Jakarta"),
    ("+8:00", "Beijing, Perth, Singapore, Hong Kong"),
    ("+9:00", "Tokyo, Seoul, Osaka, Sapporo, Yakutsk"),
    ("+9:30", "Adelaide, Darwin"),
    ("+10:00", "Eastern Australia, Guam, Vladivostok"),
    ("+11:00", "Magadan, Solomon Islands, New Caledonia"),
    ("+12:00", "Auckland, Wellington, Fiji, Kamchatka"),
];

/// Weak passwords, the kind the real API hands out.
pub(super) const PASSWORDS: &[&str] = &[
    "password", "letmein", "sunshine", "dragon", "monkey", "qwerty", "football", "baseball",
    "shadow", "master", "superman", "trustno1", "iloveyou", "princess", "starwars", "hello123",
    "welcome", "whatever", "freedom", "chocolate", "pepper", "ginger", "summer", "winter",
    "tigger", "cookie", "batman", "snoopy", "hunter", "rangers", "phoenix", "mustang",
    "charlie", "maverick", "cowboys", "scooter", "bandit", "zxcvbnm", "abc123", "1q2w3e4r",
];

/// First half of usernames.
pub(super) const USER_ADJECTIVES: &[&str] = &[
    "blue", "silver", "happy", "crazy", "tiny", "heavy", "lazy", "sad", "organic", "yellow",
    "brown", "black", "white", "red", "purple", "orange", "golden", "ticklish", "angry", "smart",
    "beautiful", "big", "small", "green", "fierce", "quiet", "lucky", "brave",
];

/// Second half of usernames.
pub(super) const USER_ANIMALS: &[&str] = &[
    "bird", "cat", "dog", "tiger", "lion", "koala", "panda", "rabbit", "swan", "fish", "goose",
    "frog", "butterfly", "bear", "gorilla", "peacock", "leopard", "elephant", "ladybug", "snake",
    "duck", "wolf", "zebra", "meercat", "owl", "fox", "otter", "beaver",
];

const US_MALE: &[&str] = &[
    "James", "John", "Robert", "Michael", "William", "David", "Richard", "Joseph", "Thomas",
    "Charles", "Daniel", "Matthew", "Anthony", "Mark", "Donald", "Steven", "Paul", "Andrew",
    "Joshua", "Kenneth", "Kevin", "Brian", "George", "Timothy", "Ronald", "Jason", "Edward",
    "Jeffrey", "Ryan", "Jacob", "Gary", "Nicholas", "Eric", "Jonathan", "Stephen", "Larry",
];
const US_FEMALE: &[&str] = &[
    "Mary", "Patricia", "Jennifer", "Linda", "Elizabeth", "Barbara", "Susan", "Jessica",
    "Sarah", "Karen", "Lisa", "Nancy", "Betty", "Margaret", "Sandra", "Ashley", "Kimberly",
    "Emily", "Donna", "Michelle", "Carol", "Amanda", "Dorothy", "Melissa", "Deborah",
    "Stephanie", "Rebecca", "Sharon", "Laura", "Cynthia", "Kathleen", "Amy", "Angela",
    "Shirley", "Anna", "Brenda",
];
const US_LAST: &[&str] = &[
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
    "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor",
    "Moore", "Jackson", "Martin", "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez",
    "Clark", "Ramirez", "Lewis", "Robinson", "Walker", "Young", "Allen", "King", "Wright",
    "Scott", "Torres", "Nguyen", "Hill", "Flores",
];
const US_STREETS: &[&str] = &[
    "Main St", "Oak Ridge Ln", "Pecan Acres Ln", "W Sherman Dr", "Hickory Creek Dr",
    "Parker Rd", "Valwood Pkwy", "Lovers Ln", "Samaritan Dr", "Westheimer Rd", "E Center St",
    "Photinia Ave", "Mockingbird Hill", "Railroad St", "Spring St", "Daisy Dr", "Groveland Terrace",
    "Cedar Ln", "Country Club Rd", "Eason Rd", "Wheeler Ridge Dr", "Brown Terrace",
    "Fincher Rd", "Smokey Ln",
];
const US_CITIES: &[&str] = &[
    "Springfield", "Fresno", "Columbus", "Cape Fear", "Austin", "Arlington", "Tampa",
    "Rochester", "Portland", "Boise", "Flint", "Lakewood", "Savannah", "Garland", "Tacoma",
    "Irvine", "Albuquerque", "Salinas", "Chandler", "Stockton", "Odessa", "Lansing",
];
const US_STATES: &[&str] = &[
    "Alabama", "Arizona", "California", "Colorado", "Connecticut", "Florida", "Georgia",
    "Idaho", "Illinois", "Indiana", "Iowa", "Kansas", "Kentucky", "Maine", "Michigan",
    "Minnesota", "Missouri", "Nevada", "New Mexico", "New York", "North Carolina", "Ohio",
    "Oregon", "Pennsylvania", "Tennessee", "Texas", "Utah", "Vermont", "Washington",
];

const GB_MALE: &[&str] = &[
    "Oliver", "George", "Harry", "Jack", "Jacob", "Noah", "Charlie", "Muhammad", "Thomas",
    "Oscar", "William", "James", "Henry", "Leo", "Alfie", "Joshua", "Freddie", "Archie",
    "Ethan", "Isaac", "Alexander", "Joseph", "Edward", "Samuel", "Max", "Daniel", "Arthur",
    "Lucas", "Mohammed", "Logan", "Theo", "Harrison",
];
const GB_FEMALE: &[&str] = &[
    "Olivia", "Amelia", "Isla", "Ava", "Emily", "Isabella", "Mia", "Poppy", "Ella", "Lily",
    "Evie", "Sophia", "Grace", "Jessica", "Freya", "Ivy", "Chloe", "Sophie", "Daisy", "Alice",
    "Phoebe", "Florence", "Ruby", "Millie", "Eleanor", "Harriet", "Imogen", "Matilda",
    "Rosie", "Scarlett", "Lucy", "Abigail",
];
const GB_LAST: &[&str] = &[
    "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Robinson",
    "Wright", "Thompson", "Evans", "Walker", "White", "Roberts", "Green", "Hall", "Wood",
    "Jackson", "Clarke", "Hughes", "Edwards", "Turner", "Hill", "Moore", "Cooper", "Ward",
    "Morris", "King", "Watson", "Harrison", "Morgan", "Baker", "Young", "O'Neill",
];
const GB_STREETS: &[&str] = &[
    "High Street", "Station Road", "Main Street", "Park Road", "Church Road", "Church Street",
    "London Road", "Victoria Road", "Green Lane", "Manor Road", "Church Lane", "Park Avenue",
    "The Avenue", "The Crescent", "Queens Road", "New Road", "Grange Road", "Kings Road",
    "Mill Lane", "North Road", "Springfield Road", "Albert Road",
];
const GB_CITIES: &[&str] = &[
    "Manchester", "Leeds", "Sheffield", "Bristol", "Coventry", "Leicester", "Nottingham",
    "Newcastle upon Tyne", "Stoke-on-Trent", "Southampton", "Derby", "Portsmouth", "Brighton and Hove",
    "Plymouth", "Northampton", "Reading", "Luton", "Wolverhampton", "Bolton", "Bournemouth",
    "Norwich", "Swindon", "Chester", "Worcester",
];
const GB_STATES: &[&str] = &[
    "Greater Manchester", "West Yorkshire", "South Yorkshire", "Merseyside", "Kent", "Essex",
    "Lancashire", "Hampshire", "Surrey", "Devon", "Norfolk", "Suffolk", "Cornwall", "Cumbria",
    "Dorset", "Somerset", "Cheshire", "Tyne and Wear", "Wiltshire", "Gloucestershire",
];

const CA_MALE: &[&str] = &[
    "Liam", "Noah", "William", "Benjamin", "Lucas", "Jacob", "Ethan", "Logan", "Nathan",
    "Samuel", "Olivier", "Felix", "Gabriel", "Thomas", "Leo", "Owen", "Jack", "Charles",
    "Alexandre", "Mathis", "Zachary", "Xavier", "Antoine", "Emile", "Hunter", "Carter",
    "Dylan", "Connor", "Tristan", "Caleb",
];
const CA_FEMALE: &[&str] = &[
    "Olivia", "Emma", "Charlotte", "Alice", "Chloe", "Florence", "Rosalie", "Lea", "Juliette",
    "Zoe", "Beatrice", "Camille", "Sophia", "Maeva", "Ella", "Abigail", "Amelia", "Madison",
    "Brooklyn", "Maya", "Clara", "Jade", "Leah", "Avery", "Sarah", "Megan", "Victoria",
    "Mackenzie", "Gabrielle", "Noemie",
];
const CA_LAST: &[&str] = &[
    "Tremblay", "Gagnon", "Roy", "Cote", "Bouchard", "Gauthier", "Morin", "Lavoie", "Fortin",
    "Gagne", "Ouellet", "Pelletier", "Belanger", "Levesque", "Bergeron", "Leblanc", "Paquette",
    "Girard", "Simard", "Boucher", "Caron", "Beaulieu", "Cloutier", "Dube", "Poirier",
    "Fournier", "Lapointe", "Leclerc", "Wilson", "Campbell", "MacDonald", "Stewart", "Martin",
];
const CA_STREETS: &[&str] = &[
    "Dufferin St", "King St", "Victoria Ave", "Lakeshore Rd", "Pine Rd", "Maple Ave",
    "Oak St", "Elgin St", "Balmoral St", "Brock Rd", "Parliament St", "Coastal Hwy",
    "Bay Ave", "Duke St", "George St", "Regent Ave", "Concession Road 23", "Arctic Way",
    "St. Catherine St", "Grand Marais Ave",
];
const CA_CITIES: &[&str] = &[
    "Toronto", "Montreal", "Calgary", "Ottawa", "Edmonton", "Winnipeg", "Vancouver",
    "Quebec City", "Hamilton", "Halifax", "Victoria", "Windsor", "Saskatoon", "Regina",
    "Kingston", "Sherbrooke", "Kelowna", "Moncton", "Lethbridge", "Brampton", "Chateauguay",
];
const CA_STATES: &[&str] = &[
    "Ontario", "Quebec", "Nova Scotia", "New Brunswick", "Manitoba", "British Columbia",
    "Prince Edward Island", "Saskatchewan", "Alberta", "Newfoundland and Labrador", "Yukon",
    "Nunavut", "Northwest Territories",
];

const AU_MALE: &[&str] = &[
    "Jack", "Oliver", "William", "Noah", "Thomas", "James", "Lachlan", "Ethan", "Samuel",
    "Joshua", "Cooper", "Riley", "Lucas", "Liam", "Mitchell", "Harrison", "Alexander", "Max",
    "Jayden", "Hunter", "Bailey", "Tyler", "Xavier", "Isaac", "Jordan", "Charlie", "Darren",
    "Bruce", "Brayden", "Zac",
];
const AU_FEMALE: &[&str] = &[
    "Charlotte", "Olivia", "Ruby", "Chloe", "Emily", "Mia", "Sophie", "Isabella", "Ella",
    "Jessica", "Zoe", "Grace", "Lily", "Hannah", "Sienna", "Matilda", "Amelia", "Jasmine",
    "Madison", "Lara", "Tahlia", "Kayla", "Georgia", "Abby", "Holly", "Brooke", "Kylie",
    "Sharlene", "Kim", "Tracey",
];
const AU_LAST: &[&str] = &[
    "Smith", "Jones", "Williams", "Brown", "Wilson", "Taylor", "Johnson", "White", "Martin",
    "Anderson", "Thompson", "Nguyen", "Thomas", "Walker", "Harris", "Lee", "Ryan", "Robinson",
    "Kelly", "King", "Davis", "Wright", "Evans", "Roberts", "Green", "Hall", "Wood", "Jackson",
    "Clarke", "Patel", "Hughes", "Edwards",
];
const AU_STREETS: &[&str] = &[
    "George St", "Pitt St", "Elizabeth St", "Collins St", "Flinders St", "Queen St",
    "Hunter St", "Adelaide St", "Hay St", "Murray St", "Brunswick St", "Smith St",
    "Chapel St", "Lygon St", "Oxford St", "Parramatta Rd", "Victoria Rd", "Ocean View Rd",
    "Spring St", "Lakeside Dr",
];
const AU_CITIES: &[&str] = &[
    "Sydney", "Melbourne", "Brisbane", "Perth", "Adelaide", "Gold Coast", "Newcastle",
    "Canberra", "Wollongong", "Geelong", "Hobart", "Townsville", "Cairns", "Darwin",
    "Toowoomba", "Ballarat", "Bendigo", "Albury", "Launceston", "Mackay", "Bunbury",
];
const AU_STATES: &[&str] = &[
    "New South Wales", "Victoria", "Queensland", "Western Australia", "South Australia",
    "Tasmania", "Australian Capital Territory", "Northern Territory",
];

const DE_MALE: &[&str] = &[
    "Lukas", "Jonas", "Leon", "Finn", "Elias", "Paul", "Ben", "Felix", "Noah", "Maximilian",
    "Luis", "Henry", "Emil", "Theo", "Jakob", "Moritz", "Anton", "Matthias", "Jürgen",
    "Günter", "Horst", "Uwe", "Dieter", "Klaus", "Wolfgang", "Björn", "Sören", "Jörg",
    "Rüdiger", "Ulrich",
];
const DE_FEMALE: &[&str] = &[
    "Mia", "Emma", "Hannah", "Sofia", "Emilia", "Lina", "Marie", "Lena", "Mila", "Clara",
    "Lea", "Leonie", "Anna", "Lara", "Johanna", "Ida", "Frieda", "Ute", "Gisela", "Ingrid",
    "Monika", "Renate", "Käthe", "Jutta", "Bärbel", "Gudrun", "Dörte", "Anneliese", "Helga",
    "Margarete",
];
const DE_LAST: &[&str] = &[
    "Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker",
    "Schulz", "Hoffmann", "Schäfer", "Koch", "Bauer", "Richter", "Klein", "Wolf", "Schröder",
    "Neumann", "Schwarz", "Zimmermann", "Braun", "Krüger", "Hofmann", "Hartmann", "Lange",
    "Schmitt", "Werner", "Krause", "Meier", "Lehmann", "Köhler", "Groß", "Weiß",
];
const DE_STREETS: &[&str] = &[
    "Hauptstraße", "Schulstraße", "Gartenstraße", "Bahnhofstraße", "Dorfstraße",
    "Bergstraße", "Birkenweg", "Lindenstraße", "Kirchstraße", "Waldstraße", "Ringstraße",
    "Schillerstraße", "Goethestraße", "Wiesenweg", "Am Sportplatz", "Mühlenweg",
    "Friedhofstraße", "Rosenstraße", "Talstraße", "Buchenweg",
];
const DE_CITIES: &[&str] = &[
    "Berlin", "Hamburg", "München", "Köln", "Frankfurt am Main", "Stuttgart", "Düsseldorf",
    "Leipzig", "Dortmund", "Essen", "Bremen", "Dresden", "Hannover", "Nürnberg", "Duisburg",
    "Bochum", "Wuppertal", "Bielefeld", "Bonn", "Münster", "Göttingen", "Lübeck",
];
const DE_STATES: &[&str] = &[
    "Baden-Württemberg", "Bayern", "Berlin", "Brandenburg", "Bremen", "Hamburg", "Hessen",
    "Mecklenburg-Vorpommern", "Niedersachsen", "Nordrhein-Westfalen", "Rheinland-Pfalz",
    "Saarland", "Sachsen", "Sachsen-Anhalt", "Schleswig-Holstein", "Thüringen",
];

const NZ_MALE: &[&str] = &[
    "Oliver", "Jack", "Noah", "James", "William", "Leo", "Lucas", "George", "Hunter",
    "Charlie", "Thomas", "Mason", "Max", "Benjamin", "Arlo", "Nikau", "Ari", "Tane",
    "Wiremu", "Manaia", "Mikaere", "Rawiri", "Hemi", "Riley", "Finn", "Cooper", "Harrison",
    "Logan", "Jayden", "Blake",
];
const NZ_FEMALE: &[&str] = &[
    "Isla", "Charlotte", "Olivia", "Amelia", "Mia", "Harper", "Ava", "Willow", "Sophie",
    "Ruby", "Lily", "Ella", "Aria", "Maia", "Manaia", "Kaia", "Aroha", "Anahera", "Mere",
    "Kiri", "Hana", "Georgia", "Zoe", "Madison", "Grace", "Emily", "Ivy", "Matilda", "Eva",
    "Hazel",
];
const NZ_LAST: &[&str] = &[
    "Smith", "Wilson", "Williams", "Brown", "Taylor", "Jones", "Singh", "Walker", "Thompson",
    "White", "Anderson", "Harris", "Martin", "Campbell", "Stewart", "Robinson", "King",
    "Clark", "Young", "Scott", "Ngata", "Parata", "Tipene", "Walker", "Roberts", "Hughes",
    "Edwards", "Ngarimu", "Kereama", "Wood",
];
const NZ_STREETS: &[&str] = &[
    "Queen Street", "Lambton Quay", "Cuba Street", "Ponsonby Road", "Karangahape Road",
    "Colombo Street", "George Street", "Victoria Street", "Great North Road", "Dominion Road",
    "Riccarton Road", "Devonport Road", "Tinakori Road", "Cameron Road", "Te Rapa Road",
    "Bealey Avenue", "Ocean Road", "Marine Parade",
];
const NZ_CITIES: &[&str] = &[
    "Auckland", "Wellington", "Christchurch", "Hamilton", "Tauranga", "Napier", "Dunedin",
    "Palmerston North", "Nelson", "Rotorua", "New Plymouth", "Whangarei", "Invercargill",
    "Whanganui", "Gisborne", "Hastings", "Timaru", "Masterton",
];
const NZ_STATES: &[&str] = &[
    "Auckland", "Wellington", "Canterbury", "Waikato", "Bay of Plenty", "Otago",
    "Hawke's Bay", "Manawatu-Wanganui", "Northland", "Taranaki", "Southland", "Nelson",
    "Marlborough", "Gisborne", "West Coast", "Tasman",
];

pub(super) const US: NatData = NatData {
    male_first: US_MALE,
    female_first: US_FEMALE,
    last: US_LAST,
    streets: US_STREETS,
    cities: US_CITIES,
    states: US_STATES,
};
pub(super) const GB: NatData = NatData {
    male_first: GB_MALE,
    female_first: GB_FEMALE,
    last: GB_LAST,
    streets: GB_STREETS,
    cities: GB_CITIES,
    states: GB_STATES,
};
pub(super) const CA: NatData = NatData {
    male_first: CA_MALE,
    female_first: CA_FEMALE,
    last: CA_LAST,
    streets: CA_STREETS,
    cities: CA_CITIES,
    states: CA_STATES,
};
pub(super) const AU: NatData = NatData {
    male_first: AU_MALE,
    female_first: AU_FEMALE,
    last: AU_LAST,
    streets: AU_STREETS,
    cities: AU_CITIES,
    states: AU_STATES,
};
pub(super) const DE: NatData = NatData {
    male_first: DE_MALE,
    female_first: DE_FEMALE,
    last: DE_LAST,
    streets: DE_STREETS,
    cities: DE_CITIES,
    states: DE_STATES,
};
pub(super) const NZ: NatData = NatData {
    male_first: NZ_MALE,
    female_first: NZ_FEMALE,
    last: NZ_LAST,
    streets: NZ_STREETS,
    cities: NZ_CITIES,
    states: NZ_STATES,
};

/// Outward-code areas for GB postcodes.
pub(super) const GB_POST_AREAS: &[&str] = &[
    "M", "B", "L", "S", "G", "E", "N", "W", "LS", "BS", "CV", "LE", "NG", "NE", "SO", "DE",
    "PO", "BN", "PL", "RG", "LU", "WV", "BL", "BH", "NR", "SN", "CH", "WR", "SW", "EC",
];

/// Letters used by GB inward codes (no C, I, K, M, O, V).
pub(super) const GB_INWARD_LETTERS: &[u8] = b"ABDEFGHJLNPQRSTUWXYZ";

/// Two-digit pension-insurance area codes used in German SVNR ids.
pub(super) const DE_PENSION_AREAS: &[&str] = &[
    "02", "03", "04", "08", "09", "10", "11", "12", "13", "14", "15", "16", "17", "18", "19",
    "20", "21", "23", "24", "25", "26", "28", "29", "38", "39", "40", "42", "43", "44", "45",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn all_lists() -> Vec<&'static [&'static str]> {
        let mut lists = vec![
            FEMALE_TITLES,
            PASSWORDS,
            USER_ADJECTIVES,
            USER_ANIMALS,
            GB_POST_AREAS,
            DE_PENSION_AREAS,
        ];
        for nat in [&US, &GB, &CA, &AU, &DE, &NZ] {
            lists.extend([
                nat.male_first,
                nat.female_first,
                nat.last,
                nat.streets,
                nat.cities,
                nat.states,
            ]);
        }
        lists
    }

    #[test]
    fn entries_need_no_json_escaping() {
        let strings = all_lists()
            .into_iter()
            .flatten()
            .copied()
            .chain(TIMEZONES.iter().flat_map(|(o, d)| [*o, *d]));
        for s in strings {
            assert!(!s.is_empty());
            assert!(
                !s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20),
                "{s:?} would need escaping"
            );
        }
    }

    #[test]
    fn lists_are_not_trivially_small() {
        for list in all_lists() {
            assert!(list.len() >= 5, "list starting {:?} too short", list.first());
        }
    }
}
