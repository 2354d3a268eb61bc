"""`rosterdrop generate`: a realistic, deterministic synthetic OneRoster 1.1 district, written as a bundle.

The district is first built as a model of integer arrays (which school, grade, family and class each person
is in; names as indices into built-in lists), then rendered column by column into CSV chunks that stream into
the zip. Nothing makes a Python object per row: a 300,000-student district is about three million rows.

The nightly bundle is the same district a day later (same seed, so the same base): a few percent of students
are new, withdrawn, moved to another section, or have their email or name fixed. People and enrollments are
never renumbered, so every unchanged row renders to exactly the same CSV line in both bundles.
"""

from __future__ import annotations

import os
import time
import unicodedata
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from processor.context import UserError

# ---------------------------------------------------------------- the calendar of the synthetic district

BASE_STAMP = "2026-11-01T02:00:00Z"      # when the first export ran
NIGHTLY_STAMP = "2026-11-02T02:00:00Z"   # the next night's export
NIGHTLY_DATE = "2026-11-02"              # new and moved enrollments begin on the day of the change
ZIP_DATE = (2026, 11, 1, 2, 0, 0)        # a fixed entry time keeps the zip byte-identical for a seed

SCHOOL_YEAR = "2027"
YEAR_ID, S1_ID, S2_ID = "as-2027", "as-2027-s1", "as-2027-s2"
YEAR_DATES = ("2026-08-17", "2027-06-11")
S1_DATES = ("2026-08-17", "2027-01-15")
S2_DATES = ("2027-01-19", "2027-06-11")

# A class runs for the school year (homerooms, specials), one semester, or both semesters (year-long
# secondary classes, listed with both terms: a multi-valued termSourcedIds).
TERM_YEAR, TERM_S1, TERM_S2, TERM_BOTH = 0, 1, 2, 3

GRADES = ("PK", "KG", "01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12")
GRADE_LABELS = ("Pre-K", "Kindergarten", *(f"Grade {g}" for g in range(1, 13)))
ELEMENTARY, MIDDLE, HIGH = 0, 1, 2
LEVEL_GRADES = {ELEMENTARY: range(0, 7), MIDDLE: range(7, 10), HIGH: range(10, 14)}
LEVEL_SCHOOL_NAMES = ("Elementary School", "Middle School", "High School")
GRADE_LEVEL = np.array([ELEMENTARY] * 7 + [MIDDLE] * 3 + [HIGH] * 4, np.int8)

HOMEROOM, SPECIAL, SCHEDULED = 0, 1, 2
# Sections one teacher takes, by kind of class: a homeroom has its own teacher; an elementary art or music
# teacher sees many homerooms; a secondary teacher teaches about five sections of one department.
SECTIONS_PER_TEACHER = {HOMEROOM: 1, SPECIAL: 25, SCHEDULED: 5}

ID_WIDTH = {"stu": 7, "gdn": 7, "stf": 6, "cls": 6, "crs": 5, "sch": 4, "enr": 8}

# Placeholders for a multi-valued field's commas and quotes: the pyarrow CSV writer either quotes every
# string (bloating 2.8M rows) or refuses structural characters, so lists are written with placeholders
# and the finished chunk is translated back.
_SEP, _QUOTE = "\x01", "\x02"
_UNPLACEHOLD = bytes.maketrans(b"\x01\x02", b',"')

FILES = ("manifest", "orgs", "academicSessions", "courses", "classes", "users", "enrollments", "demographics")
HEADERS = {
    "orgs": "sourcedId,status,dateLastModified,name,type,identifier,parentSourcedId",
    "academicSessions": "sourcedId,status,dateLastModified,title,type,startDate,endDate,parentSourcedId,"
                        "schoolYear",
    "courses": "sourcedId,status,dateLastModified,schoolYearSourcedId,title,courseCode,grades,orgSourcedId,"
               "subjects,subjectCodes",
    "classes": "sourcedId,status,dateLastModified,title,grades,courseSourcedId,classCode,classType,location,"
               "schoolSourcedId,termSourcedIds,subjects,subjectCodes,periods",
    "users": "sourcedId,status,dateLastModified,enabledUser,orgSourcedIds,role,username,userIds,givenName,"
             "familyName,middleName,identifier,email,sms,phone,agentSourcedIds,grades,password,"
             "metadata.MembeanSchoolAdmin",
    "enrollments": "sourcedId,status,dateLastModified,classSourcedId,schoolSourcedId,userSourcedId,role,"
                   "primary,beginDate,endDate",
    "demographics": "sourcedId,status,dateLastModified,birthDate,sex,americanIndianOrAlaskaNative,asian,"
                    "blackOrAfricanAmerican,nativeHawaiianOrOtherPacificIslander,white,"
                    "demographicRaceTwoOrMoreRaces,hispanicOrLatinoEthnicity,countryOfBirthCode,"
                    "stateOfBirthAbbreviation,cityOfBirth,publicSchoolResidenceStatus",
}
MANIFEST_FILES = ("academicSessions", "categories", "classes", "classResources", "courses", "courseResources",
                  "demographics", "enrollments", "lineItems", "orgs", "resources", "results", "users")

CHUNK_ROWS = 200_000
COMPRESS_LEVEL = 1  # deflate level 6 is 3x slower for a zip only ~20% smaller

# The nightly's changes, as shares of the students it touches. Withdrawals stay under a third so that a
# 1% nightly never deactivates more than ~1% of any entity (the default hold threshold is far above).
CHANGE_SHARES = (("new_students", 0.3), ("withdrawn_students", 0.3), ("schedule_changes", 0.2),
                 ("email_fixes", 0.1), ("name_fixes", 0.1))


# ---------------------------------------------------------------- built-in names and places


def _names(text: str) -> list[str]:
    return list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))


FEMALE_NAMES = _names("""
Olivia, Emma, Charlotte, Amelia, Sophia, Mia, Isabella, Ava, Evelyn, Luna, Harper, Camila, Sofía, Scarlett,
Elizabeth, Eleanor, Emily, Chloe, Mila, Violet, Penelope, Gianna, Aria, Abigail, Ella, Avery, Hazel, Nora,
Layla, Lily, Aurora, Nova, Ellie, Madison, Grace, Isla, Willow, Zoe, Riley, Stella, Zoë, Chloé, Victoria,
Hannah, Addison, Leah, Lucy, Eliana, Ivy, Everly, Lillian, Paisley, Elena, Naomi, Maya, Natalie, Kinsley,
Delilah, Claire, Audrey, Aaliyah, Ruby, Brooklyn, Alice, Aubrey, Autumn, Leilani, Savannah, Valentina,
Kennedy, Madelyn, Josephine, Bella, Skylar, Genesis, Sophie, Hailey, Sadie, Natalia, Quinn, Caroline,
Allison, Gabriella, Anna, Serenity, Nevaeh, Cora, Ariana, Emery, Lydia, Jade, Sarah, Eva, Adeline, Madeline,
Piper, Rylee, Athena, Peyton, Vivian, Clara, Liliana, Samantha, Maria, María, Iris, Ayla, Eloise, Lyla,
Eliza, Hadley, Melody, Julia, Rose, Isabelle, Brielle, Eden, Remi, Mackenzie, Maeve, Margaret, Reagan,
Jasmine, Ximena, Guadalupe, Lucía, Valeria, Daniela, Fernanda, Renata, Paula, Inés, Mariana, Ana, Carmen,
Rosa, Yesenia, Itzel, Dulce, Fátima, Aisha, Amira, Zainab, Mariam, Noor, Hiba, Leila, Yasmin, Priya,
Ananya, Diya, Saanvi, Isha, Kavya, Meera, Mei, Xin, Ying, Jia, Hui, Lan, Mai, Linh, Ngọc, Thảo, Hoa, Trang,
Ji-woo, Seo-yeon, Min-ji, Ha-eun, Yuna, Sakura, Aiko, Hana, Keiko, Imani, Keisha, Tanisha, Ebony, Nia,
Zuri, Amara, Adaeze, Chiamaka, Ngozi, Fatou, Aminata, Hodan, Ifrah, Sahra, Anastasia, Olga, Svetlana,
Natasha, Katarzyna, Zofia, Agnieszka, Ingrid, Astrid, Freya, Sigrid, Renée, Maëlle, Léa, Héloïse, Anaïs,
Mary-Kate, Anne-Marie, Siobhán, Aoife, Niamh, Saoirse, Mary, Patricia, Jennifer, Linda, Barbara, Susan,
Jessica, Karen, Nancy, Lisa, Betty, Sandra, Ashley, Kimberly, Donna, Michelle, Carol, Amanda, Melissa,
Deborah, Stephanie, Rebecca, Laura, Sharon, Cynthia, Kathleen, Amy, Angela, Shirley, Brenda, Pamela,
Nicole, Katherine, Christine, Rachel, Carolyn, Janet, Heather, Catherine, Diane, Ruth, Julie, Joyce,
Virginia, Kelly, Christina, Lauren, Joan, Judith, Megan, Andrea, Cheryl, Jacqueline, Martha, Gloria,
Teresa, Ann, Sara, Frances, Kathryn, Janice, Jean, Denise, Amber, Doris, Marilyn, Danielle, Beverly,
Theresa, Diana, Brittany, Marie, Kayla, Alexis, Lori, Tiana, Destiny, Jazmín, Marisol, Luz, Beatriz
""")
MALE_NAMES = _names("""
Liam, Noah, Oliver, James, Elijah, Mateo, Theodore, Henry, Lucas, William, Benjamin, Levi, Sebastian, Jack,
Ezra, Michael, Daniel, Leo, Owen, Samuel, Hudson, Alexander, Asher, Luca, Ethan, John, David, Jackson,
Joseph, Mason, Luke, Matthew, Julian, Dylan, Elias, Jacob, Maverick, Gabriel, Logan, Aiden, Thomas, Isaac,
Miles, Grayson, Santiago, Anthony, Wyatt, Carter, Jayden, Ezekiel, Caleb, Cooper, Josiah, Charles,
Christopher, Isaiah, Nolan, Cameron, Nathan, Joshua, Kai, Waylon, Angel, Lincoln, Andrew, Roman, Adrian,
Aaron, Wesley, Ian, Thiago, Axel, Brooks, Bennett, Weston, Rowan, Christian, Theo, Beau, Eli, Silas,
Jonathan, Ryan, Leonardo, Walker, Jaxon, Micah, Everett, Robert, Enzo, Parker, Jeremiah, Jose, José,
Colton, Luka, Easton, Landon, Jordan, Amir, Gael, Austin, Adam, Jameson, August, Xavier, Myles, Dominic,
Damian, Nicholas, Jace, Carson, Atlas, Adriel, Kayden, Hunter, River, Greyson, Emmett, Harrison, Vincent,
Milo, Jasper, Giovanni, Jonah, Zion, Connor, Sawyer, Arthur, Archer, Declan, Diego, Juan, Carlos, Luis,
Jesús, Miguel, Ángel, Andrés, Alejandro, Javier, Fernando, Ricardo, Eduardo, Rafael, Joaquín, Emilio,
Óscar, Raúl, Sergio, Héctor, Rubén, Iván, Julián, Ramón, Tomás, Nicolás, Martín, Simón, Darnell, DeShawn,
Jamal, Malik, Tyrone, Andre, André, Terrell, Marcus, Darius, Kwame, Kofi, Chidi, Emeka, Olumide, Tunde,
Mamadou, Ibrahima, Abdi, Abdirahman, Mohamed, Muhammad, Ahmed, Omar, Yusuf, Ali, Hassan, Khalid, Tariq,
Karim, Arjun, Aarav, Vihaan, Rohan, Aditya, Ishaan, Vikram, Rahul, Sanjay, Dev, Wei, Jun, Hao, Ming, Jian,
Bao, Minh, Huy, Khoa, Quang, Tuấn, Duc, Min-jun, Seo-jun, Ji-ho, Hyun-woo, Haruto, Ren, Sota, Kenji,
Hiroshi, Dmitri, Ivan, Sergei, Alexei, Nikolai, Piotr, Jakub, Tomasz, Lars, Erik, Søren, Björn, Magnus,
Mathéo, Raphaël, Noé, Jean-Luc, Jean-Pierre, Seán, Ciarán, Oisín, Pádraig, Eoin, Richard, Mark, Donald,
Steven, Paul, Kenneth, Kevin, Brian, George, Timothy, Ronald, Edward, Jason, Jeffrey, Gary, Eric, Stephen,
Larry, Justin, Scott, Brandon, Gregory, Frank, Patrick, Raymond, Dennis, Jerry, Tyler, Douglas, Peter,
Zachary, Walter, Kyle, Harold, Carl, Jeremy, Keith, Roger, Gerald, Terry, Sean, Lawrence, Joe, Jesse,
Albert, Bryan, Billy, Bruce, Willie, Alan, Ralph, Roy, Wayne, Eugene, Randy, Louis, Russell, Philip, Bobby,
Johnny, Bradley, Tristan, Cristian, Emanuel, Jorge, Pedro, Manuel, Francisco, Antonio, Alonso
""")
FAMILY_NAMES = _names("""
Smith, Johnson, Williams, Brown, Jones, Garcia, García, Miller, Davis, Rodriguez, Rodríguez, Martinez,
Martínez, Hernandez, Hernández, Lopez, López, Gonzalez, González, Wilson, Anderson, Thomas, Taylor, Moore,
Jackson, Martin, Lee, Perez, Pérez, Thompson, White, Harris, Sanchez, Sánchez, Clark, Ramirez, Ramírez,
Lewis, Robinson, Walker, Young, Allen, King, Wright, Scott, Torres, Nguyen, Nguyễn, Hill, Flores, Green,
Adams, Nelson, Baker, Hall, Rivera, Campbell, Mitchell, Carter, Roberts, Gómez, Phillips, Evans, Turner,
Díaz, Parker, Cruz, Edwards, Collins, Reyes, Stewart, Morris, Morales, Murphy, Cook, Rogers, Gutiérrez,
Ortiz, Morgan, Cooper, Peterson, Bailey, Reed, Kelly, Howard, Ramos, Kim, Cox, Ward, Richardson, Watson,
Brooks, Chávez, Wood, James, Bennett, Gray, Mendoza, Ruiz, Hughes, Price, Álvarez, Castillo, Sanders,
Patel, Myers, Long, Ross, Foster, Jiménez, Powell, Jenkins, Perry, Russell, Sullivan, Bell, Coleman,
Butler, Henderson, Barnes, Gonzales, Fisher, Vásquez, Simmons, Romero, Jordan, Patterson, Alexander,
Hamilton, Graham, Reynolds, Griffin, Wallace, Moreno, West, Cole, Hayes, Bryant, Herrera, Gibson, Ellis,
Tran, Trần, Medina, Aguilar, Stevens, Murray, Ford, Castro, Marshall, Owens, Harrison, Fernández, McDonald,
Woods, Washington, Kennedy, Wells, Vargas, Henry, Chen, Freeman, Webb, Tucker, Guzmán, Burns, Crawford,
Olson, Simpson, Porter, Hunter, Gordon, Méndez, Silva, Shaw, Snyder, Mason, Dixon, Muñoz, Hunt, Hicks,
Holmes, Palmer, Wagner, Black, Robertson, Boyd, Rose, Stone, Salazar, Fox, Warren, Mills, Meyer, Rice,
Schmidt, Garza, Daniels, Ferguson, Nichols, Stephens, Soto, Weaver, Ryan, Gardner, Payne, Grant, Dunn,
Spencer, Hawkins, Arnold, Pierce, Hansen, Peters, Santos, Hart, Bradley, Knight, Elliott, Cunningham,
Duncan, Armstrong, Hudson, Carroll, Lane, Riley, Andrews, Alvarado, Ray, Delgado, Berry, Perkins,
Hoffman, Johnston, Matthews, Peña, Richards, Contreras, Willis, Carpenter, Lawrence, Sandoval, O'Brien,
O'Connor, O'Neill, O'Sullivan, O'Reilly, O'Donnell, O'Malley, O'Hara, D'Angelo, D'Amico, DeLuca, McCarthy,
McLaughlin, MacDonald, MacKenzie, Fitzgerald, Kowalski, Nowak, Wiśniewski, Wójcik, Lewandowski, Müller,
Schneider, Fischer, Weber, Schäfer, Becker, Koch, Richter, Klein, Wolf, Schröder, Neumann, Zimmermann,
Krüger, Hofmann, Krause, Köhler, Lefèvre, Dubois, Moreau, Laurent, Girard, Dupont, Lambert, Fontaine,
Rousseau, Mercier, Guérin, Gagnon, Côté, Bouchard, Lévesque, Bélanger, Pelletier, Rossi, Russo, Ferrari,
Esposito, Bianchi, Romano, Colombo, Ricci, Marino, Greco, Gallo, Conti, Costa, Giordano, Mancini, Rizzo,
Ivanov, Smirnov, Kuznetsov, Popov, Sokolov, Petrov, Volkov, Novak, Horvat, Kovač, Jovanović, Petrović,
Andersson, Johansson, Karlsson, Nilsson, Eriksson, Larsson, Olsen, Jensen, Nielsen, Pedersen, Søndergaard,
Virtanen, Korhonen, Mäkinen, Singh, Kumar, Sharma, Shah, Gupta, Reddy, Rao, Iyer, Nair, Mehta, Joshi,
Desai, Chopra, Kapoor, Bhatt, Das, Chowdhury, Rahman, Hossain, Khan, Ahmed, Ali, Hussein, Hassan,
Abdullahi, Mohamud, Farah, Warsame, Osei, Mensah, Boateng, Owusu, Adeyemi, Okafor, Okeke, Nwosu, Eze,
Adebayo, Diallo, Traoré, Ndiaye, Kamara, Wang, Li, Zhang, Liu, Yang, Huang, Zhao, Wu, Zhou, Xu, Sun, Ma,
Zhu, Hu, Guo, Lin, He, Gao, Luo, Zheng, Liang, Xie, Tang, Phạm, Lê, Hoàng, Huỳnh, Phan, Vũ, Võ, Đặng,
Bùi, Đỗ, Park, Choi, Jung, Kang, Cho, Yoon, Jang, Lim, Han, Oh, Seo, Shin, Kwon, Hwang, Ahn, Song, Yoo,
Hong, Tanaka, Suzuki, Takahashi, Watanabe, Yamamoto, Nakamura, Kobayashi, Sato, Kato, Yoshida, Yamada,
Sasaki, Matsumoto, Inoue, Kimura, Hayashi, Cohen, Levy, Friedman, Katz, Goldberg, Shapiro, Rosen, Kaplan,
Papadopoulos, Georgiou, Yilmaz, Kaya, Demir, Şahin, Haddad, Khoury, Nasser, Saleh, Mansour, Azizi,
Hosseini, Karimi, Rezaei, Yazzie, Begay, Tsosie, Benally, Kealoha, Akana, Villanueva, De La Cruz,
Van Buren, St. John, Santiago, Navarro, Cabrera, Espinoza, Valdez, Fuentes, Rojas, Acosta, Ibarra
""")
SCHOOL_NAME_STEMS = _names("""
Lincoln, Washington, Jefferson, Roosevelt, Adams, Madison, Monroe, Kennedy, Franklin, Hamilton, Grant,
Garfield, Wilson, Truman, Eisenhower, McKinley, Hoover, Coolidge, Martin Luther King Jr., Rosa Parks,
César Chávez, Sojourner Truth, Harriet Tubman, Frederick Douglass, Booker T. Washington, Thurgood Marshall,
Sally Ride, Amelia Earhart, Helen Keller, Susan B. Anthony, Clara Barton, Mark Twain, Walt Whitman,
Emily Dickinson, Robert Frost, Langston Hughes, Maya Angelou, Benjamin Banneker, George Washington Carver,
Thomas Edison, John Muir, Lewis and Clark, Sacagawea, Jackie Robinson, Roberto Clemente, Dolores Huerta,
Ellen Ochoa, Mae Jemison, Katherine Johnson, Grace Hopper, Neil Armstrong, John Glenn, Georgia O'Keeffe,
Sandra Day O'Connor, Daniel Inouye, Patsy Mink, Fred Korematsu, Ruby Bridges, Medgar Evers,
Shirley Chisholm, Barbara Jordan, Wilma Rudolph, Jesse Owens, Arthur Ashe, Duke Ellington, Ella Fitzgerald,
Sequoyah, Pioneer, Frontier, Heritage, Liberty, Independence, Discovery, Horizon, Summit, Meadowbrook,
Maple Grove, Cedar Ridge, Oak Hill, Pine Crest, Willow Brook, Birchwood, Aspen, Sycamore, Magnolia,
Cottonwood, Redwood, Evergreen, Sunset, Sunrise, Lakeview, Riverside, Hillside, Valley View, Mountain View,
Bayside, Brookside, Fairview, Glenwood, Greenfield, Highland, Parkside, Prairie View, Rolling Hills,
Shady Grove, Stonegate, Woodland, Westwood, Eastwood, Northgate, Southside, Central, Eagle Rock,
Falcon Ridge, Hawthorne, Bear Creek, Deer Park, Fox Hollow, Quail Run, Wolf Creek, Canyon Vista, Desert Sky,
Mesa Verde, Copper Canyon, Silver Creek, Golden Hills, Crystal Springs, Emerald Hills, Harbor View,
Lone Pine, Cherry Valley, Orchard Park, Mill Creek, Spring Valley, Twin Oaks, Hidden Valley, Clear Lake,
Forest Glen, Meadow Lark, Bluebonnet, Blue Ridge, Red Oak, White Oak, Laurel, Juniper, Cypress, Alder,
Hemlock, Dogwood, Chestnut, Walnut Grove, Peachtree, Sierra Vista, Vista Del Mar, Los Alamitos, El Camino,
Buena Vista, Rancho, Santa Rosa, San Marcos, Del Rio
""")
TOWNS = _names("""
Maple Valley, Cedar Falls, Riverbend, Lakewood, Fairview, Brookfield, Pine Ridge, Oak Grove, Willow Creek,
Springdale, Clearwater, Highland Park, Silver Lake, Stonebridge, Harbor Point, Eastfield, Northwood,
Westbrook, Granite Falls, Sun Prairie, Millbrook, Ashford, Kingsport, Bridgewater, Red Hill, Elmhurst,
Crestview, Glen Ellen, Rock Springs, Hollister
""")
DISTRICT_SUFFIXES = ("Unified School District", "Public Schools", "School District", "Community Schools")

# (abbreviation, FIPS code: the first two digits of NCES ids, cities, telephone area code)
STATES = (
    ("AL", "01", ("Birmingham", "Montgomery", "Mobile", "Huntsville"), "205"),
    ("AZ", "04", ("Phoenix", "Tucson", "Mesa", "Flagstaff"), "520"),
    ("AR", "05", ("Little Rock", "Fayetteville", "Fort Smith", "Jonesboro"), "479"),
    ("CA", "06", ("Los Angeles", "San Diego", "Fresno", "Sacramento", "Oakland", "San José"), "559"),
    ("CO", "08", ("Denver", "Aurora", "Colorado Springs", "Pueblo"), "719"),
    ("CT", "09", ("Hartford", "New Haven", "Bridgeport", "Stamford"), "860"),
    ("IL", "17", ("Chicago", "Springfield", "Peoria", "Rockford"), "217"),
    ("OR", "41", ("Portland", "Salem", "Eugene", "Bend"), "503"),
    ("TX", "48", ("Houston", "San Antonio", "Dallas", "Austin", "El Paso"), "512"),
    ("WA", "53", ("Seattle", "Spokane", "Tacoma", "Yakima"), "509"),
)
OTHER_BIRTH_STATES = ("NY", "FL", "GA", "NC", "OH", "PA", "MI", "NJ", "VA", "AZ", "NV", "UT", "MN", "MA")
BIRTH_COUNTRIES = (("US", 0.9), ("MX", 0.035), ("SV", 0.01), ("GT", 0.01), ("HN", 0.005), ("VN", 0.007),
                   ("CN", 0.006), ("IN", 0.008), ("PH", 0.006), ("SO", 0.004), ("UA", 0.004), ("CA", 0.005))
# CEDS publicSchoolResidenceStatus codes (kept as text: the leading zero matters)
RESIDENCE = (("01652", 0.88), ("01653", 0.08), ("01654", 0.04))
# shares of single races, then "two or more"; order: aian, asian, black, nhpi, white
RACE_SHARES = (0.01, 0.06, 0.15, 0.005, 0.725, 0.05)
RACE_COLUMNS = ("americanIndianOrAlaskaNative", "asian", "blackOrAfricanAmerican",
                "nativeHawaiianOrOtherPacificIslander", "white")
# Only RFC 2606 domains: synthetic people must never share an address with a real mailbox.
GUARDIAN_DOMAINS = ("example.com", "example.net", "example.org")

_TRANSLIT = str.maketrans({"ø": "o", "Ø": "O", "đ": "d", "Đ": "D", "ł": "l", "Ł": "L", "ß": "ss",
                           "æ": "ae", "Æ": "Ae", "œ": "oe", "ı": "i"})


def _login_form(name: str) -> str:
    """José O'Brien-Núñez → joseobriennunez: the ASCII letters a username or email is built from."""
    folded = unicodedata.normalize("NFKD", name.translate(_TRANSLIT)).lower()
    return "".join(ch for ch in folded if "a" <= ch <= "z")


GIVEN_NAMES = FEMALE_NAMES + MALE_NAMES  # one index space; female names first
N_FEMALE, N_MALE, N_FAMILY = len(FEMALE_NAMES), len(MALE_NAMES), len(FAMILY_NAMES)
_GIVEN = pa.array(GIVEN_NAMES)
_FAMILY = pa.array(FAMILY_NAMES)
_GIVEN_LOGIN = pa.array([_login_form(n) for n in GIVEN_NAMES])
_GIVEN_INITIAL = pa.array([_login_form(n)[0] for n in GIVEN_NAMES])
_FAMILY_LOGIN = pa.array([_login_form(n) for n in FAMILY_NAMES])
assert all(_login_form(n) for n in GIVEN_NAMES + FAMILY_NAMES), "every name needs ASCII letters for logins"
assert not any(ch in n for n in GIVEN_NAMES + FAMILY_NAMES + SCHOOL_NAME_STEMS for ch in ',"\r\n')


def _popularity(n: int) -> np.ndarray:
    """A few names are common, most are rare; the lists start with the common ones."""
    w = 1.0 / (np.arange(n) + 25.0)
    return w / w.sum()


_P_FEMALE, _P_MALE, _P_FAMILY = _popularity(N_FEMALE), _popularity(N_MALE), _popularity(N_FAMILY)


# ---------------------------------------------------------------- the course catalogue


@dataclass(frozen=True)
class CourseSpec:
    title: str
    code: str
    subject: str
    sced: str                 # SCED-like subject code, text for its leading zero
    level: int
    grades: tuple[int, ...]
    term: int
    department: int           # teachers are grouped by department within a school
    kind: int                 # HOMEROOM, SPECIAL or SCHEDULED
    capacity: int             # students per section
    location: str             # "" means the teacher's own room


@dataclass(frozen=True)
class Slot:
    """One line of a student's timetable: a period, and the course it holds for each grade (or electives)."""
    period: str
    by_grade: dict[int, int]
    electives: tuple[int, ...] = ()


def _catalogue() -> tuple[list[CourseSpec], dict[int, list[Slot]], tuple[int, ...]]:
    specs: list[CourseSpec] = []
    departments: dict[str, int] = {}

    def add(title, code, subject, sced, level, grades, term=TERM_BOTH, kind=SCHEDULED, capacity=28,
            location="", department=None) -> int:
        dept = departments.setdefault(department or subject, len(departments))
        specs.append(CourseSpec(title, code, subject, sced, level, tuple(grades), term, dept, kind, capacity,
                                location))
        return len(specs) - 1

    elementary = LEVEL_GRADES[ELEMENTARY]
    homerooms = {g: add(f"{GRADE_LABELS[g]} Homeroom", f"HR-{GRADES[g]}", "Homeroom", "", ELEMENTARY, [g],
                        TERM_YEAR, HOMEROOM, 18 if g == 0 else 22) for g in elementary}
    specials = tuple(add(title, code, subject, sced, ELEMENTARY, elementary, TERM_YEAR, SPECIAL,
                         location=room)
                     for title, code, subject, sced, room in (
                         ("Art", "ART-E", "Visual Arts", "05154", "Art Room"),
                         ("Music", "MUS-E", "Music", "05101", "Music Room"),
                         ("Physical Education", "PE-E", "Physical Education", "08001", "Gym"),
                         ("Library", "LIB-E", "Library Media", "22001", "Library")))
    slots = {ELEMENTARY: [Slot("HR", homerooms)]}

    def core(level, subject, area, period, titles, term=TERM_BOTH, capacity=28, location="",
             department=None) -> Slot:
        by_grade = {}
        for i, (g, title) in enumerate(zip(LEVEL_GRADES[level], titles, strict=True)):
            code = "".join(w[0] for w in title.split() if w[0].isalnum()).upper()[:4] + GRADES[g]
            by_grade[g] = add(title, code, subject, f"{area:02d}{(level * 10 + i + 1):03d}", level, [g], term,
                              capacity=capacity, location=location, department=department)
        return Slot(period, by_grade)

    def electives(level, titles) -> tuple[int, ...]:
        return tuple(add(title, f"{code}-{'M' if level == MIDDLE else 'H'}", subject,
                         f"{area:02d}{(level * 10 + i + 50):03d}", level, LEVEL_GRADES[level], capacity=26,
                         location=room)
                     for i, (title, code, subject, area, room) in enumerate(titles))

    middle_electives = electives(MIDDLE, (
        ("Band", "BAND", "Music", 5, "Band Room"), ("Choir", "CHOR", "Music", 5, "Choir Room"),
        ("Art", "ART", "Visual Arts", 5, "Art Room"),
        ("Computer Science Discoveries", "CSD", "Computer Science", 10, ""),
        ("Spanish Exploratory", "SPEX", "World Languages", 6, ""),
        ("Theater Arts", "THEA", "Theater", 5, "")))
    slots[MIDDLE] = [
        core(MIDDLE, "English Language Arts", 1, "1", ("English 6", "English 7", "English 8")),
        core(MIDDLE, "Mathematics", 2, "2", ("Math 6", "Math 7", "Pre-Algebra")),
        core(MIDDLE, "Science", 3, "3", ("Earth Science", "Life Science", "Physical Science")),
        core(MIDDLE, "Social Studies", 4, "4", ("World Geography", "World History", "U.S. History")),
        core(MIDDLE, "Physical Education", 8, "5",
             ("Physical Education 6", "Physical Education 7", "Physical Education 8"),
             capacity=34, location="Gym"),
        Slot("6", {}, middle_electives),
        Slot("7", {}, middle_electives),
    ]
    high_electives = electives(HIGH, (
        ("Art I", "ART1", "Visual Arts", 5, "Art Room"), ("Band", "BAND", "Music", 5, "Band Room"),
        ("Choir", "CHOR", "Music", 5, "Choir Room"),
        ("Computer Science Principles", "CSP", "Computer Science", 10, ""),
        ("Journalism", "JOUR", "English Language Arts", 11, ""),
        ("Psychology", "PSYC", "Social Studies", 4, ""),
        ("Drama", "DRAM", "Theater", 5, ""), ("Culinary Arts", "CULA", "Career and Technical Education", 16,
                                               "Kitchen Lab")))
    slots[HIGH] = [
        core(HIGH, "English Language Arts", 1, "1", ("English 9", "English 10", "English 11", "English 12")),
        core(HIGH, "Mathematics", 2, "2", ("Algebra I", "Geometry", "Algebra II", "Precalculus")),
        core(HIGH, "Science", 3, "3", ("Biology", "Chemistry", "Physics", "Environmental Science")),
        core(HIGH, "Social Studies", 4, "4", ("World Geography", "World History", "U.S. History",
                                                "U.S. Government")),
        core(HIGH, "World Languages", 6, "5", ("Spanish I", "Spanish II", "Spanish III", "Spanish IV")),
        core(HIGH, "Physical Education", 8, "6", ("PE 9", "PE 10", "PE 11", "PE 12"), TERM_S1, 34, "Gym"),
        core(HIGH, "Health Education", 8, "6", ("Health 9", "Health 10", "Health 11", "Health 12"), TERM_S2,
             department="Physical Education"),
        Slot("7", {}, high_electives),
    ]
    return specs, slots, specials


SPECS, SLOTS, SPECIALS = _catalogue()
SLOT_LIST = [(level, slot) for level in (ELEMENTARY, MIDDLE, HIGH) for slot in SLOTS[level]]
N_SPECS, N_SLOTS = len(SPECS), len(SLOT_LIST)
SPEC_KIND = np.array([s.kind for s in SPECS], np.int8)
SPEC_TERM = np.array([s.term for s in SPECS], np.int8)
SPEC_DEPT = np.array([s.department for s in SPECS], np.int64)
SPEC_CAPACITY = np.array([s.capacity for s in SPECS], np.int64)
SPEC_LEVEL = np.array([s.level for s in SPECS], np.int8)
SPEC_FIRST_GRADE = np.array([s.grades[0] for s in SPECS], np.int64)
SLOT_PERIODS = [slot.period for _, slot in SLOT_LIST]


# ---------------------------------------------------------------- the district model (integer arrays)


class _Arrays:
    """Row-aligned numpy arrays; concatenating two of a kind appends rows (the nightly's new people)."""

    def __len__(self) -> int:
        return len(getattr(self, fields(self)[0].name))

    def extend(self, other):
        return type(self)(**{f.name: np.concatenate([getattr(self, f.name), getattr(other, f.name)])
                             for f in fields(self)})

    def copy(self):
        return type(self)(**{f.name: getattr(self, f.name).copy() for f in fields(self)})


@dataclass
class Students(_Arrays):
    school: np.ndarray
    grade: np.ndarray
    family: np.ndarray
    female: np.ndarray
    given: np.ndarray
    middle: np.ndarray         # -1: none
    surname: np.ndarray
    surname2: np.ndarray       # -1: none; else the second half of a hyphenated family name
    login_given: np.ndarray    # the names the username was made from: a later name fix keeps the login
    login_surname: np.ndarray
    login_surname2: np.ndarray
    email_fixed: np.ndarray    # the nightly moved this student to the first.last.number address form
    active: np.ndarray
    changed: np.ndarray        # dateLastModified is the nightly's
    birth: np.ndarray          # days since 1970-01-01
    race: np.ndarray           # bit i set: RACE_COLUMNS[i]; bit 5: two or more races
    hispanic: np.ndarray
    country: np.ndarray
    birth_state: np.ndarray    # -1: blank (born abroad)
    birth_city: np.ndarray     # -1: blank
    residence: np.ndarray


@dataclass
class Guardians(_Arrays):
    family: np.ndarray
    female: np.ndarray
    given: np.ndarray
    surname: np.ndarray
    surname2: np.ndarray
    role: np.ndarray           # 0 parent, 1 guardian
    domain: np.ndarray
    mobile: np.ndarray         # last two digits of a 555-01xx number; -1: none
    home: np.ndarray
    changed: np.ndarray


@dataclass
class Staff(_Arrays):
    role: np.ndarray           # 0 teacher, 1 administrator, 2 aide
    school: np.ndarray         # -1: the district office
    female: np.ndarray
    given: np.ndarray
    middle: np.ndarray
    surname: np.ndarray
    surname2: np.ndarray
    school_admin: np.ndarray   # metadata.MembeanSchoolAdmin=true


@dataclass
class Classes(_Arrays):
    school: np.ndarray
    spec: np.ndarray
    course: np.ndarray
    slot: np.ndarray           # -1: specials (no period)
    section: np.ndarray        # 1-based number within its course, for classCode
    homeroom: np.ndarray       # specials: the homeroom whose students take it; else -1
    alternative: np.ndarray    # another section of the same offering (where a schedule change moves to); -1
    teacher: np.ndarray
    coteacher: np.ndarray      # -1: none


@dataclass
class Enrollments(_Arrays):
    student: np.ndarray
    klass: np.ndarray
    begins_on_change: np.ndarray   # begins NIGHTLY_DATE instead of the term's first day
    changed: np.ndarray


@dataclass
class District:
    name: str
    domain: str
    state: int
    lea_id: str                 # NCES LEA id, 7 digits
    school_level: np.ndarray
    school_name: list[str]
    school_nces: list[str]
    course_school: np.ndarray
    course_spec: np.ndarray
    classes: Classes
    students: Students
    family_school: np.ndarray
    guardians: Guardians
    staff: Staff
    enrollments: Enrollments
    state_id_salt: int


# ---------------------------------------------------------------- building the base district


def _rng(seed: int, stream: int) -> np.random.Generator:
    # stream 0 is the base district, 1 the nightly's changes: the base never depends on --changes
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(stream,))))


def _given_names(rng: np.random.Generator, female: np.ndarray) -> np.ndarray:
    f = rng.choice(N_FEMALE, size=len(female), p=_P_FEMALE)
    m = N_FEMALE + rng.choice(N_MALE, size=len(female), p=_P_MALE)
    return np.where(female, f, m).astype(np.int16)


def _surnames(rng: np.random.Generator, n: int, hyphenated: float) -> tuple[np.ndarray, np.ndarray]:
    first = rng.choice(N_FAMILY, size=n, p=_P_FAMILY).astype(np.int16)
    second = rng.choice(N_FAMILY, size=n, p=_P_FAMILY).astype(np.int16)
    second = np.where((rng.random(n) < hyphenated) & (second != first), second, -1).astype(np.int16)
    return first, second


def _school_levels(n: int) -> list[int]:
    if n == 1:
        return [ELEMENTARY]
    if n == 2:
        return [ELEMENTARY, HIGH]
    high = middle = max(1, round(n * 0.2))
    return [ELEMENTARY] * (n - high - middle) + [MIDDLE] * middle + [HIGH] * high


def _place_students(rng: np.random.Generator, school_level: np.ndarray, n: int) -> tuple[np.ndarray, ...]:
    """Equal grade cohorts (pre-K half size), spread over the schools of each level by school size."""
    offered = np.isin(GRADE_LEVEL, school_level)
    weight = np.where(np.arange(len(GRADES)) == 0, 0.5, 1.0) * offered
    per_grade = rng.multinomial(n, weight / weight.sum())
    size = rng.lognormal(0.0, 0.25, size=len(school_level))
    school, grade = [], []
    for g, count in enumerate(per_grade):
        if not count:
            continue
        candidates = np.flatnonzero(school_level == GRADE_LEVEL[g])
        p = size[candidates] / size[candidates].sum()
        school.append(rng.choice(candidates, size=count, p=p))
        grade.append(np.full(count, g))
    school, grade = np.concatenate(school), np.concatenate(grade)
    order = np.lexsort((grade, school))
    return school[order].astype(np.int32), grade[order].astype(np.int8)


def _families(rng: np.random.Generator, school: np.ndarray, sibling_rate: float = 0.08) -> np.ndarray:
    """Some students join a schoolmate's family, so siblings share guardians (and stay single-school)."""
    n = len(school)
    joiner = rng.random(n) < sibling_rate
    anchors = np.flatnonzero(~joiner)
    joiners = np.flatnonzero(joiner)
    lo = np.searchsorted(school[anchors], school[joiners], "left")
    hi = np.searchsorted(school[anchors], school[joiners], "right")
    pick = lo + (rng.random(len(joiners)) * (hi - lo)).astype(np.int64)
    family = np.arange(n)
    has = hi > lo
    family[joiners[has]] = anchors[pick[has]]
    return np.unique(family, return_inverse=True)[1].astype(np.int32)


def _new_students(rng: np.random.Generator, school: np.ndarray, grade: np.ndarray, family: np.ndarray,
                  family_surname: np.ndarray, family_surname2: np.ndarray, state: int) -> Students:
    n = len(school)
    female = rng.random(n) < 0.49
    given = _given_names(rng, female)
    middle = np.where(rng.random(n) < 0.6, _given_names(rng, female), -1).astype(np.int16)
    # most children carry the family's surname; some a parent's other one
    own, own2 = _surnames(rng, n, 0.05)
    keep = rng.random(n) < 0.92
    surname = np.where(keep, family_surname[family], own).astype(np.int16)
    surname2 = np.where(keep, family_surname2[family], own2).astype(np.int16)
    # age on 1 September 2026 is the grade's usual age; one in ten is a year older (started late, retained)
    usual_birth_year = 2020 - (grade.astype(np.int64) - 1)
    birth_year = usual_birth_year - (rng.random(n) < 0.1)
    start = (birth_year - 1970).astype("datetime64[Y]").astype("datetime64[D]") + np.timedelta64(244, "D")
    birth = start.astype(np.int64) + rng.integers(0, 365, size=n)
    race_pick = rng.choice(len(RACE_SHARES), size=n, p=RACE_SHARES)
    first_race = np.where(race_pick < 5, race_pick, rng.integers(0, 5, size=n))
    second_race = (first_race + rng.integers(1, 5, size=n)) % 5
    race = (1 << first_race) | np.where(race_pick == 5, (1 << second_race) | (1 << 5), 0)
    country = rng.choice(len(BIRTH_COUNTRIES), size=n, p=[p for _, p in BIRTH_COUNTRIES])
    us = country == 0
    home_state = rng.random(n) < 0.8
    other_state = rng.integers(0, len(OTHER_BIRTH_STATES), size=n) + 1
    birth_state = np.where(us, np.where(home_state, 0, other_state), -1)
    cities = len(STATES[state][2])
    birth_city = np.where(us & home_state, rng.integers(0, cities, size=n), -1)
    residence = rng.choice(len(RESIDENCE), size=n, p=[p for _, p in RESIDENCE])
    return Students(school=school.astype(np.int32), grade=grade.astype(np.int8),
                    family=family.astype(np.int32),
                    female=female, given=given, middle=middle, surname=surname, surname2=surname2,
                    login_given=given.copy(), login_surname=surname.copy(), login_surname2=surname2.copy(),
                    email_fixed=np.zeros(n, bool), active=np.ones(n, bool), changed=np.zeros(n, bool),
                    birth=birth.astype(np.int32), race=race.astype(np.int8), hispanic=rng.random(n) < 0.27,
                    country=country.astype(np.int8), birth_state=birth_state.astype(np.int8),
                    birth_city=birth_city.astype(np.int8), residence=residence.astype(np.int8))


def _new_guardians(rng: np.random.Generator, families: np.ndarray, family_surname: np.ndarray,
                   family_surname2: np.ndarray) -> Guardians:
    """One to three guardians per family, in family order (rendering relies on that order)."""
    per_family = rng.choice([1, 2, 3], size=len(families), p=[0.15, 0.6, 0.25])
    family = np.repeat(families, per_family).astype(np.int32)
    first_of_family = np.r_[0, np.cumsum(per_family)[:-1]]
    position = np.arange(len(family)) - np.repeat(first_of_family, per_family)
    n = len(family)
    female = rng.random(n) < np.where(position == 0, 0.65, np.where(position == 1, 0.3, 0.5))
    own, own2 = _surnames(rng, n, 0.04)
    shares_name = (position == 0) | (rng.random(n) < 0.7)
    mobile = np.where(rng.random(n) < 0.85, rng.integers(0, 100, size=n), -1)
    home = np.where(rng.random(n) < 0.35, rng.integers(0, 100, size=n), -1)
    return Guardians(family=family, female=female, given=_given_names(rng, female),
                     surname=np.where(shares_name, family_surname[family], own).astype(np.int16),
                     surname2=np.where(shares_name, family_surname2[family], own2).astype(np.int16),
                     role=(rng.random(n) < 0.12).astype(np.int8),
                     domain=rng.integers(0, len(GUARDIAN_DOMAINS), size=n).astype(np.int8),
                     mobile=mobile.astype(np.int8), home=home.astype(np.int8), changed=np.zeros(n, bool))


def _new_staff(rng: np.random.Generator, role: np.ndarray, school: np.ndarray, female_share: float,
               school_admin: np.ndarray | None = None) -> Staff:
    n = len(role)
    female = rng.random(n) < female_share
    surname, surname2 = _surnames(rng, n, 0.05)
    return Staff(role=role.astype(np.int8), school=school.astype(np.int32), female=female,
                 given=_given_names(rng, female),
                 middle=np.where(rng.random(n) < 0.2, _given_names(rng, female), -1).astype(np.int16),
                 surname=surname, surname2=surname2,
                 school_admin=np.zeros(n, bool) if school_admin is None else school_admin)


def _rank_within(groups: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """Each row's 0-based position within its group: in row order, or in random order given an rng."""
    groups = np.asarray(groups, np.int64)
    if rng is None:
        order = np.argsort(groups, kind="stable")
    else:
        # one int64 sort key (group, random) is ~3x faster than lexsort over two arrays
        order = np.argsort((groups << 32) | rng.integers(0, 1 << 32, size=len(groups)))
    sorted_groups = groups[order]
    starts = np.r_[0, np.flatnonzero(sorted_groups[1:] != sorted_groups[:-1]) + 1]
    lengths = np.diff(np.r_[starts, len(groups)])
    rank = np.empty(len(groups), np.int64)
    rank[order] = np.arange(len(groups)) - np.repeat(starts, lengths)
    return rank


def _timetables(rng: np.random.Generator, school_level: np.ndarray, st: Students
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(student, spec, slot) for every line of every student's timetable; specials come later."""
    level = school_level[st.school]
    members = {lvl: np.flatnonzero(level == lvl) for lvl in SLOTS}
    # electives are drawn without replacement, so a student with two elective periods takes two
    elective_picks = {}
    for lvl, slots in SLOTS.items():
        options = next((s.electives for s in slots if s.electives), ())
        if options:
            elective_picks[lvl] = iter(np.argsort(rng.random((len(members[lvl]), len(options))), axis=1).T)
    students, specs, slots = [], [], []
    for slot_id, (lvl, slot) in enumerate(SLOT_LIST):
        if slot.electives:
            spec = np.asarray(slot.electives)[next(elective_picks[lvl])]
        else:
            by_grade = np.full(len(GRADES), -1)
            by_grade[list(slot.by_grade)] = list(slot.by_grade.values())
            spec = by_grade[st.grade[members[lvl]]]
        students.append(members[lvl])
        specs.append(spec)
        slots.append(np.full(len(members[lvl]), slot_id))
    return np.concatenate(students), np.concatenate(specs), np.concatenate(slots)


def _build_district(seed: int, n_schools: int, n_students: int) -> District:
    rng = _rng(seed, 0)
    state = int(rng.integers(len(STATES)))
    town = TOWNS[int(rng.integers(len(TOWNS)))]
    suffix = DISTRICT_SUFFIXES[int(rng.integers(len(DISTRICT_SUFFIXES)))]
    lea_id = STATES[state][1] + f"{int(rng.integers(100, 99999)):05d}"

    school_level = np.array(_school_levels(n_schools), np.int8)
    stems = [SCHOOL_NAME_STEMS[i] for i in rng.permutation(len(SCHOOL_NAME_STEMS))]
    school_name, used = [], set()
    for i, level in enumerate(school_level):
        name = f"{stems[i % len(stems)]} {LEVEL_SCHOOL_NAMES[level]}"
        if name in used:
            name += f" #{i // len(stems) + 1}"
        used.add(name)
        school_name.append(name)
    school_numbers = np.sort(rng.choice(99_999, size=n_schools, replace=False)) + 1
    school_nces = [f"{lea_id}{n:05d}" for n in school_numbers]

    # courses: every course of the school's level, per school
    course_school = np.concatenate([np.full(int((SPEC_LEVEL == lvl).sum()), s)
                                    for s, lvl in enumerate(school_level)]).astype(np.int32)
    course_spec = np.concatenate([np.flatnonzero(SPEC_LEVEL == lvl) for lvl in school_level]).astype(np.int32)
    course_of = np.full((n_schools, N_SPECS), -1, np.int64)
    course_of[course_school, course_spec] = np.arange(len(course_school))

    school, grade = _place_students(rng, school_level, n_students)
    family = _families(rng, school)
    n_families = int(family.max()) + 1 if len(family) else 0
    family_surname, family_surname2 = _surnames(rng, n_families, 0.06)
    students = _new_students(rng, school, grade, family, family_surname, family_surname2, state)
    family_school = np.zeros(n_families, np.int32)
    family_school[family] = school
    guardians = _new_guardians(rng, np.arange(n_families), family_surname, family_surname2)

    classes, enrollments, teacher_school = _sections(rng, school_level, students, course_of)
    teachers = _new_staff(rng, np.zeros(len(teacher_school)), teacher_school, 0.75)
    admins_per_school = rng.integers(2, 5, size=n_schools)
    admin_school = np.repeat(np.arange(n_schools), admins_per_school)
    first_admin = np.r_[0, np.cumsum(admins_per_school)[:-1]]
    # the principal (first admin) always has the school-admin flag; some assistants too
    is_principal = np.zeros(len(admin_school), bool)
    is_principal[first_admin] = True
    flag = is_principal | (rng.random(len(admin_school)) < 0.3)
    admins = _new_staff(rng, np.ones(len(admin_school)), admin_school, 0.6, flag)
    aides_per_school = np.where(school_level == ELEMENTARY, rng.integers(1, 4, size=n_schools),
                                rng.integers(0, 2, size=n_schools))
    aides = _new_staff(rng, np.full(int(aides_per_school.sum()), 2), np.repeat(np.arange(n_schools),
                                                                               aides_per_school), 0.85)
    district_office = _new_staff(rng, np.ones(3), np.full(3, -1), 0.5)
    staff = teachers.extend(admins).extend(aides).extend(district_office)
    return District(name=f"{town} {suffix}", domain=f"{_login_form(town)}.example.org", state=state,
                    lea_id=lea_id, school_level=school_level, school_name=school_name,
                    school_nces=school_nces,
                    course_school=course_school, course_spec=course_spec, classes=classes, students=students,
                    family_school=family_school, guardians=guardians, staff=staff, enrollments=enrollments,
                    state_id_salt=int(rng.integers(1, 10**8)))


def _sections(rng: np.random.Generator, school_level: np.ndarray, st: Students, course_of: np.ndarray
              ) -> tuple[Classes, Enrollments, np.ndarray]:
    """Cut each offering (school × course × period) into balanced sections, deal its students into them
    at random, add the elementary specials per homeroom, and give every class its teachers (teachers are
    numbered by school; the third value is each teacher's school)."""
    pair_student, pair_spec, pair_slot = _timetables(rng, school_level, st)
    key = (st.school[pair_student].astype(np.int64) * N_SPECS + pair_spec) * N_SLOTS + pair_slot
    offerings, pair_offering, takers = np.unique(key, return_inverse=True, return_counts=True)
    off_school = (offerings // (N_SPECS * N_SLOTS)).astype(np.int32)
    off_spec = (offerings // N_SLOTS) % N_SPECS
    off_slot = offerings % N_SLOTS
    sections = -(-takers // SPEC_CAPACITY[off_spec])
    first_class = np.r_[0, np.cumsum(sections)[:-1]]
    # round-robin over a shuffle gives sections whose sizes differ by at most one
    rank = _rank_within(pair_offering, rng)
    pair_class = first_class[pair_offering] + rank % sections[pair_offering]

    n_sectioned = int(sections.sum())
    cls_offering = np.repeat(np.arange(len(offerings)), sections)
    section = np.arange(n_sectioned) - first_class[cls_offering]
    n_sec = sections[cls_offering]
    alternative = np.where(n_sec > 1, first_class[cls_offering] + (section + 1) % n_sec, -1)

    # specials: one class per homeroom and special, taken by exactly that homeroom's students
    homerooms = np.flatnonzero(SPEC_KIND[off_spec[cls_offering]] == HOMEROOM)
    homeroom_rank = np.full(n_sectioned, -1)
    homeroom_rank[homerooms] = np.arange(len(homerooms))
    n_sp = len(SPECIALS)
    sp_homeroom = np.repeat(homerooms, n_sp)
    sp_alt_homeroom = alternative[sp_homeroom]
    sp_index = np.tile(np.arange(n_sp), len(homerooms))
    alt_rank = homeroom_rank[np.maximum(sp_alt_homeroom, 0)]
    sp_alternative = np.where(sp_alt_homeroom >= 0, n_sectioned + alt_rank * n_sp + sp_index, -1)
    cls_school = np.r_[off_school[cls_offering], off_school[cls_offering][sp_homeroom]].astype(np.int32)
    cls_spec = np.r_[off_spec[cls_offering], np.asarray(SPECIALS)[sp_index]].astype(np.int32)
    cls_slot = np.r_[off_slot[cls_offering], np.full(len(sp_homeroom), -1)].astype(np.int16)
    cls_homeroom = np.r_[np.full(n_sectioned, -1), sp_homeroom].astype(np.int32)
    cls_alternative = np.r_[alternative, sp_alternative].astype(np.int32)
    n_classes = len(cls_school)

    in_homeroom = np.flatnonzero(homeroom_rank[pair_class] >= 0)
    sp_student = np.repeat(pair_student[in_homeroom], n_sp)
    sp_class = n_sectioned + np.repeat(homeroom_rank[pair_class[in_homeroom]], n_sp) * n_sp + np.tile(
        np.arange(n_sp), len(in_homeroom))
    enr_student = np.r_[pair_student, sp_student]
    enr_class = np.r_[pair_class, sp_class]
    # grouped by student, timetable order within a student, as an SIS export lists them
    order = np.argsort(enr_student, kind="stable")
    enrollments = Enrollments(student=enr_student[order].astype(np.int32),
                              klass=enr_class[order].astype(np.int32),
                              begins_on_change=np.zeros(len(order), bool), changed=np.zeros(len(order), bool))

    # teachers: within a school and department, each takes SECTIONS_PER_TEACHER of its classes
    dept = SPEC_DEPT[cls_spec]
    per_teacher = np.array([SECTIONS_PER_TEACHER[k] for k in range(3)])[SPEC_KIND[cls_spec]]
    group = cls_school.astype(np.int64) * (SPEC_DEPT.max() + 1) + dept
    teacher_key = group * (n_classes + 1) + _rank_within(group) // per_teacher
    teacher_keys, cls_teacher = np.unique(teacher_key, return_inverse=True)
    teacher_school = (teacher_keys // (n_classes + 1) // (SPEC_DEPT.max() + 1)).astype(np.int32)
    # a co-teacher (e.g. special education) in some homerooms and secondary classes, from the same school
    n_schools = len(school_level)
    first_teacher = np.searchsorted(teacher_school, np.arange(n_schools))
    teachers_at = np.bincount(teacher_school, minlength=n_schools)
    co = (rng.random(n_classes) < 0.05) & (SPEC_KIND[cls_spec] != SPECIAL) & (teachers_at[cls_school] >= 2)
    at = cls_school[co]
    lead_local = cls_teacher[co] - first_teacher[at]
    step = 1 + rng.integers(0, np.maximum(teachers_at[at] - 1, 1))  # never the lead teacher themself
    other = first_teacher[at] + (lead_local + step) % teachers_at[at]
    cls_coteacher = np.full(n_classes, -1, np.int32)
    cls_coteacher[co] = other

    cls_course = course_of[cls_school, cls_spec].astype(np.int32)
    classes = Classes(school=cls_school, spec=cls_spec, course=cls_course, slot=cls_slot,
                      section=(_rank_within(cls_course) + 1).astype(np.int32), homeroom=cls_homeroom,
                      alternative=cls_alternative, teacher=cls_teacher.astype(np.int32),
                      coteacher=cls_coteacher)
    return classes, enrollments, teacher_school


# ---------------------------------------------------------------- the nightly: the same district a day later


def _share_out(total: int) -> dict[str, int]:
    """Split the touched students over the kinds of change (largest remainder, so small totals spread)."""
    raw = np.array([share for _, share in CHANGE_SHARES]) * total
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: total - counts.sum()]:
        counts[i] += 1
    return {name: int(c) for (name, _), c in zip(CHANGE_SHARES, counts, strict=True)}


def _nightly(base: District, seed: int, percent: float) -> tuple[District, dict[str, int]]:
    rng = _rng(seed, 1)
    st, enr, cls = base.students.copy(), base.enrollments.copy(), base.classes
    n = len(st)
    plan = _share_out(min(round(n * percent / 100), n))

    # disjoint sets of existing students; schedule changes need a class with another section to move to
    movable_row = cls.alternative[enr.klass] >= 0
    movable = np.zeros(n, bool)
    movable[enr.student[movable_row]] = True
    order = rng.permutation(n)
    moved = order[movable[order]][: plan["schedule_changes"]]
    rest = order[~np.isin(order, moved)]
    cut = np.cumsum([plan["withdrawn_students"], plan["email_fixes"], plan["name_fixes"]])
    withdrawn, email_fixed, renamed = rest[: cut[0]], rest[cut[0]: cut[1]], rest[cut[1]: cut[2]]

    # schedule change: an elementary student changes homeroom (and with it the specials), a secondary
    # student one class, to another section of the same course and period. The enrollment keeps its id.
    chosen = np.zeros(n, bool)
    chosen[moved] = True
    rows = np.flatnonzero(chosen[enr.student] & movable_row)
    elementary = base.school_level[st.school[enr.student[rows]]] == ELEMENTARY
    secondary = rows[~elementary]
    one_each = _rank_within(enr.student[secondary], rng) == 0
    rows = np.r_[rows[elementary], secondary[one_each]]
    enr.klass[rows] = cls.alternative[enr.klass[rows]]
    enr.begins_on_change[rows] = True
    enr.changed[rows] = True

    st.active[withdrawn] = False
    st.email_fixed[email_fixed] = True
    st.changed[np.r_[email_fixed, renamed]] = True
    # name fixes: most a new family name (marriage, adoption, a typo), some a corrected given name
    split = (2 * len(renamed) + 2) // 3
    family_fix, given_fix = renamed[:split], renamed[split:]
    st.surname[family_fix] = (st.surname[family_fix] + rng.integers(1, N_FAMILY, len(family_fix))) % N_FAMILY
    st.surname2[family_fix] = -1
    g = st.given[given_fix].astype(np.int64)
    female = g < N_FEMALE
    st.given[given_fix] = np.where(female, (g + rng.integers(1, N_FEMALE, len(g))) % N_FEMALE,
                                   N_FEMALE + (g - N_FEMALE + rng.integers(1, N_MALE, len(g))) % N_MALE)

    # new students arrive into a peer's school and grade and take the peer's timetable, so every new
    # enrollment lands in a class that exists; each brings a new family with its guardians
    k = plan["new_students"]
    peers = rng.choice(np.flatnonzero(st.active), size=k) if k else np.zeros(0, np.int64)
    n_families = len(base.family_school)
    new_families = np.arange(n_families, n_families + k)
    fam_surname, fam_surname2 = _surnames(rng, k, 0.06)
    pad = np.zeros(n_families, np.int16)  # indexable by the new families' ids
    newcomers = _new_students(rng, st.school[peers], st.grade[peers], new_families,
                              np.r_[pad, fam_surname], np.r_[pad, fam_surname2], base.state)
    newcomers.changed[:] = True
    new_guardians = _new_guardians(rng, new_families, np.r_[pad, fam_surname], np.r_[pad, fam_surname2])
    new_guardians.changed[:] = True
    first_row = np.searchsorted(enr.student, peers, "left")
    row_count = np.searchsorted(enr.student, peers, "right") - first_row
    copied = np.repeat(first_row, row_count) + np.arange(row_count.sum()) - np.repeat(
        np.r_[0, np.cumsum(row_count)[:-1]], row_count)
    added = Enrollments(student=np.repeat(np.arange(n, n + k), row_count).astype(np.int32),
                        klass=enr.klass[copied], begins_on_change=np.ones(len(copied), bool),
                        changed=np.ones(len(copied), bool))

    students = st.extend(newcomers)
    guardians = base.guardians.copy().extend(new_guardians)
    family_school = np.r_[base.family_school, st.school[peers]].astype(np.int32)
    # a guardian whose list of children lost a withdrawn sibling is an updated row too
    lost_child = np.zeros(len(family_school), bool)
    lost_child[st.family[withdrawn]] = True
    guardians.changed |= lost_child[guardians.family]
    nightly = District(**{**base.__dict__, "students": students, "guardians": guardians,
                          "family_school": family_school, "enrollments": enr.extend(added)})

    active_guardians = _active_guardians(nightly)
    summary = {"new_students": k, "withdrawn_students": len(withdrawn), "schedule_changes": len(moved),
               "email_fixes": len(email_fixed), "name_fixes": len(renamed),
               "enrollments_added": len(added),
               "enrollments_removed": int(np.isin(enr.student, withdrawn).sum()),
               "enrollments_moved": len(rows),
               "guardians_added": len(new_guardians),
               "guardians_removed": int((~active_guardians[: len(base.guardians)]).sum())}
    return nightly, summary


def _active_guardians(d: District) -> np.ndarray:
    """A guardian is in the export while one of their children is."""
    active_children = np.bincount(d.students.family[d.students.active], minlength=len(d.family_school))
    return active_children[d.guardians.family] > 0


# ---------------------------------------------------------------- rendering: arrays → CSV columns


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """Ids like stu-0001234: zero-padded to at least `width` digits, so the same number renders the same
    in every file and chunk. Assembled as bytes: pyarrow's cast-and-pad is ~4x slower."""
    numbers = np.asarray(numbers, np.int64)
    if len(numbers) and numbers.max() >= 10**width:
        # beyond the usual width (a very large district): numbers simply take more digits
        padded = pc.utf8_lpad(pc.cast(pa.array(numbers), pa.string()), width, "0")
        return _join(prefix, padded)
    head = np.frombuffer(prefix.encode(), np.uint8)
    w = len(head) + width
    out = np.empty((len(numbers), w), np.uint8)
    out[:, : len(head)] = head
    rest = numbers.copy()
    for k in range(w - 1, len(head) - 1, -1):
        rest, digit = np.divmod(rest, 10)
        out[:, k] = digit + 48  # ASCII "0"
    offsets = np.arange(0, len(numbers) * w + 1, w, dtype=np.int32)
    return pa.StringArray.from_buffers(len(numbers), pa.py_buffer(offsets), pa.py_buffer(out))


def _coded(values, codes: np.ndarray) -> pa.DictionaryArray:
    """A column that takes few distinct values: a dictionary array costs one small int per row."""
    indices = pa.array(np.asarray(codes, np.int32))
    return pa.DictionaryArray.from_arrays(indices, pa.array(values, pa.string()))


def _optional(values, codes: np.ndarray) -> pa.DictionaryArray:
    """Like _coded, with -1 meaning blank."""
    return _coded(["", *values], np.asarray(codes, np.int64) + 1)


def _const(value: str, n: int) -> pa.DictionaryArray:
    return _coded([value], np.zeros(n, np.int8))


def _multi(values) -> str:
    """A multi-valued field (one cell, a comma list in quotes), written with placeholders; see _SEP."""
    values = list(values)
    return values[0] if len(values) == 1 else _QUOTE + _SEP.join(values) + _QUOTE


def _join(*parts) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def _family_names(first: np.ndarray, second: np.ndarray, names: pa.Array = _FAMILY, hyphen: str = "-"
                  ) -> pa.Array:
    out = pc.take(names, first)
    double = second >= 0
    if double.any():
        joined = _join(out, hyphen, pc.take(names, np.maximum(second, 0)))
        out = pc.if_else(pa.array(double), joined, out)
    return out


def _numbered(handles: pa.Array) -> pa.Array:
    """jgarcia, jgarcia2, jgarcia3...: later people with the same handle get the next number, so adding
    people (the nightly's new students) never changes an earlier person's username or email."""
    codes = pc.dictionary_encode(handles).indices.to_numpy(zero_copy_only=False)
    rank = _rank_within(codes)
    suffix = pc.if_else(pa.array(rank > 0), pc.cast(pa.array(rank + 1), pa.string()), "")
    return _join(handles, suffix)


def _lists(member_ids: pa.Array, counts: np.ndarray) -> pa.Array:
    """One multi-valued cell per group, from member ids already ordered by group."""
    offsets = np.r_[0, np.cumsum(counts)].astype(np.int32)
    joined = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), member_ids), _SEP)
    return pc.if_else(pa.array(counts > 1), _join(_QUOTE, joined, _QUOTE), joined)


def _stamps(changed: np.ndarray) -> pa.DictionaryArray:
    return _coded([BASE_STAMP, NIGHTLY_STAMP], changed.astype(np.int8))


def _school_ids(schools: np.ndarray) -> pa.Array:
    return _ids("sch-", np.asarray(schools) + 1, ID_WIDTH["sch"])


def _org_ids(d: District) -> list[str]:
    """Index 0 is the district office; school s is at s + 1."""
    return [f"dst-{d.lea_id}", *_school_ids(np.arange(len(d.school_level))).to_pylist()]


def _table(names: str, columns: list) -> pa.Table:
    return pa.table(columns, names=names.split(","))


def _orgs(d: District) -> pa.Table:
    n = len(d.school_level)
    org = _org_ids(d)
    return _table(HEADERS["orgs"], [
        org, ["active"] * (n + 1), [BASE_STAMP] * (n + 1), [d.name, *d.school_name],
        ["district", *["school"] * n], [d.lea_id, *d.school_nces], ["", *[org[0]] * n]])


def _sessions() -> pa.Table:
    rows = [(YEAR_ID, "2026-2027", "schoolYear", *YEAR_DATES, ""),
            (S1_ID, "Semester 1 2026-2027", "semester", *S1_DATES, YEAR_ID),
            (S2_ID, "Semester 2 2026-2027", "semester", *S2_DATES, YEAR_ID)]
    cols = list(zip(*rows, strict=True))
    return _table(HEADERS["academicSessions"], [
        cols[0], ["active"] * 3, [BASE_STAMP] * 3, cols[1], cols[2], cols[3], cols[4], cols[5],
        [SCHOOL_YEAR] * 3])


def _spec_column(attribute: str, specs: np.ndarray) -> pa.DictionaryArray:
    return _coded([getattr(s, attribute) for s in SPECS], specs)


def _spec_grades(specs: np.ndarray) -> pa.DictionaryArray:
    return _coded([_multi(GRADES[g] for g in s.grades) for s in SPECS], specs)


def _courses(d: District) -> pa.Table:
    n = len(d.course_spec)
    return _table(HEADERS["courses"], [
        _ids("crs-", np.arange(n) + 1, ID_WIDTH["crs"]), _const("active", n), _const(BASE_STAMP, n),
        _const(YEAR_ID, n), _spec_column("title", d.course_spec), _spec_column("code", d.course_spec),
        _spec_grades(d.course_spec), _school_ids(d.course_school), _spec_column("subject", d.course_spec),
        _spec_column("sced", d.course_spec)])


def _people_names(p) -> tuple[pa.Array, pa.Array]:
    return pc.take(_GIVEN, p.given), _family_names(p.surname, p.surname2)


def _classes(d: District, staff_surnames: pa.Array) -> pa.Table:
    c = d.classes
    n = len(c)
    spec = c.spec
    kind = SPEC_KIND[spec]
    title = pc.take(pa.array([s.title for s in SPECS]), spec)
    teacher = pc.take(staff_surnames, c.teacher)
    period = _optional(SLOT_PERIODS, c.slot)
    # homeroom: "Grade 3 Homeroom (Nguyen)"; special: "Music - Grade 3 (Nguyen)", after its homeroom's
    # teacher; secondary: "Algebra I - P2 (Okafor)"
    homeroom = np.maximum(c.homeroom, 0)
    special_title = _join(title, " - ", pc.take(pa.array(GRADE_LABELS), SPEC_FIRST_GRADE[c.spec[homeroom]]),
                          " (", pc.take(teacher, homeroom), ")")
    scheduled_title = _join(title, " - P", pc.cast(period, pa.string()), " (", teacher, ")")
    homeroom_title = _join(title, " (", teacher, ")")
    full_title = pc.if_else(pa.array(kind == HOMEROOM), homeroom_title,
                            pc.if_else(pa.array(kind == SPECIAL), special_title, scheduled_title))
    # a teacher keeps one room; rooms are numbered from 100 within each school
    room_number = 100 + c.teacher - _first_teacher_at(d)[c.school]
    teacher_room = _join("Room ", pc.cast(pa.array(room_number), pa.string()))
    fixed_room = pc.take(pa.array([s.location for s in SPECS]), spec)
    location = pc.if_else(pa.array(np.array([not s.location for s in SPECS])[spec]), teacher_room, fixed_room)
    term_ids = [YEAR_ID, S1_ID, S2_ID, _multi([S1_ID, S2_ID])]
    return _table(HEADERS["classes"], [
        _ids("cls-", np.arange(n) + 1, ID_WIDTH["cls"]), _const("active", n), _const(BASE_STAMP, n),
        full_title, _spec_grades(spec), _ids("crs-", c.course + 1, ID_WIDTH["crs"]),
        _join(_spec_column("code", spec).cast(pa.string()), "-",
              pc.utf8_lpad(pc.cast(pa.array(c.section), pa.string()), 2, "0")),
        _coded(["homeroom", "scheduled"], kind != HOMEROOM), location, _school_ids(c.school),
        _coded(term_ids, SPEC_TERM[spec]), _spec_column("subject", spec), _spec_column("sced", spec), period])


def _first_teacher_at(d: District) -> np.ndarray:
    teachers = np.flatnonzero(d.staff.role == 0)
    return np.searchsorted(d.staff.school[teachers], np.arange(len(d.school_level)))


def _user_columns(n: int, *, sourced_id, stamp, org, role, username, user_ids, given, family, middle,
                  identifier, email, sms, phone, agents, grades, school_admin) -> list:
    blank = _const("", n)
    return [sourced_id, _const("active", n), stamp, _const("true", n), org, role, username, user_ids, given,
            family, middle, identifier, email, sms, phone, agents, grades, blank, school_admin]


def _staff_users(d: District) -> pa.Table:
    s = d.staff
    n = len(s)
    given, family = _people_names(s)
    username = _numbered(_join(pc.take(_GIVEN_INITIAL, s.given), _family_names(s.surname, s.surname2,
                                                                                _FAMILY_LOGIN, "")))
    return _table(HEADERS["users"], _user_columns(
        n, sourced_id=_ids("stf-", np.arange(n) + 1, ID_WIDTH["stf"]), stamp=_const(BASE_STAMP, n),
        org=_coded(_org_ids(d), s.school + 1), role=_coded(["teacher", "administrator", "aide"], s.role),
        username=username, user_ids=_join("{LDAP:", username, "}"), given=given, family=family,
        middle=_optional(GIVEN_NAMES, s.middle), identifier=_ids("", np.arange(n) + 1000, 6),
        email=_join(username, "@" + d.domain), sms=_const("", n), phone=_const("", n), agents=_const("", n),
        grades=_const("", n), school_admin=_coded(["", "true"], s.school_admin.astype(np.int8))))


def _state_ids(d: District, students: np.ndarray) -> pa.Array:
    # an affine map modulo 10^9 is a bijection (the multiplier is coprime to 10): unique, random-looking
    # 10-digit ids, always with a leading zero, that stay the same however many students are added
    return _ids("", (387_420_489 * np.asarray(students, np.int64) + d.state_id_salt) % 10**9, 10)


def _student_users(d: District) -> pa.Table:
    st = d.students
    every = np.arange(len(st))
    login_family = _family_names(st.login_surname, st.login_surname2, _FAMILY_LOGIN, "")
    handle = _numbered(_join(pc.take(_GIVEN_LOGIN, st.login_given), ".", login_family))
    number = _ids("", every + 1, ID_WIDTH["stu"])
    fixed = _join(pc.take(_GIVEN_LOGIN, st.login_given), ".", login_family, ".", number)
    email = _join(pc.if_else(pa.array(st.email_fixed), fixed, handle), "@students." + d.domain)
    gd = d.guardians
    guardians_of = _lists(_ids("gdn-", np.arange(len(gd)) + 1, ID_WIDTH["gdn"]),
                          np.bincount(gd.family, minlength=len(d.family_school)))
    rows = np.flatnonzero(st.active)
    sub = Students(**{f.name: getattr(st, f.name)[rows] for f in fields(st)})
    given, family = _people_names(sub)
    n = len(rows)
    table = _table(HEADERS["users"], _user_columns(
        n, sourced_id=_ids("stu-", rows + 1, ID_WIDTH["stu"]), stamp=_stamps(sub.changed),
        org=_school_ids(sub.school), role=_const("student", n), username=pc.take(handle, rows),
        user_ids=_join("{LDAP:", pc.take(handle, rows), "}"), given=given, family=family,
        middle=_optional(GIVEN_NAMES, sub.middle), identifier=_state_ids(d, rows), email=pc.take(email, rows),
        sms=_const("", n), phone=_const("", n), agents=pc.take(guardians_of, sub.family),
        grades=_coded(GRADES, sub.grade), school_admin=_const("", n)))
    return table


def _guardian_users(d: District) -> pa.Table:
    st, gd = d.students, d.guardians
    login_family = _family_names(gd.surname, gd.surname2, _FAMILY_LOGIN, "")
    handle = _numbered(_join(pc.take(_GIVEN_LOGIN, gd.given), ".", login_family))
    email = _join(handle, "@", pc.take(pa.array(GUARDIAN_DOMAINS), gd.domain))
    active = np.flatnonzero(st.active)
    by_family = active[np.argsort(st.family[active], kind="stable")]
    children_of = _lists(_ids("stu-", by_family + 1, ID_WIDTH["stu"]),
                         np.bincount(st.family[active], minlength=len(d.family_school)))
    rows = np.flatnonzero(_active_guardians(d))
    sub = Guardians(**{f.name: getattr(gd, f.name)[rows] for f in fields(gd)})
    given, family = _people_names(sub)
    n = len(rows)
    area = STATES[d.state][3]
    phones = [f"({area}) 555-01{i:02d}" for i in range(100)]
    return _table(HEADERS["users"], _user_columns(
        n, sourced_id=_ids("gdn-", rows + 1, ID_WIDTH["gdn"]), stamp=_stamps(sub.changed),
        org=_school_ids(d.family_school[sub.family]), role=_coded(["parent", "guardian"], sub.role),
        username=pc.take(email, rows), user_ids=_const("", n), given=given, family=family,
        middle=_const("", n), identifier=_const("", n), email=pc.take(email, rows),
        sms=_optional(phones, sub.mobile), phone=_optional(phones, sub.home),
        agents=pc.take(children_of, sub.family), grades=_const("", n), school_admin=_const("", n)))


def _enrollment_chunks(d: District) -> Iterator[pa.Table]:
    c, enr, st = d.classes, d.enrollments, d.students
    term_begin = [YEAR_DATES[0], S1_DATES[0], S2_DATES[0], YEAR_DATES[0], NIGHTLY_DATE]
    term_end = [YEAR_DATES[1], S1_DATES[1], S2_DATES[1], YEAR_DATES[1]]
    # teachers first: the lead (primary) and any co-teacher of every class
    lead = np.arange(len(c))
    co = np.flatnonzero(c.coteacher >= 0)
    for prefix, klass, teacher, primary in (("enr-t", lead, c.teacher[lead], "true"),
                                            ("enr-c", co, c.coteacher[co], "false")):
        n = len(klass)
        term = SPEC_TERM[c.spec[klass]]
        yield _table(HEADERS["enrollments"], [
            _ids(prefix, klass + 1, ID_WIDTH["cls"]), _const("active", n), _const(BASE_STAMP, n),
            _ids("cls-", klass + 1, ID_WIDTH["cls"]), _school_ids(c.school[klass]),
            _ids("stf-", teacher + 1, ID_WIDTH["stf"]), _const("teacher", n), _const(primary, n),
            _coded(term_begin, term), _coded(term_end, term)])
    for start in range(0, len(enr), CHUNK_ROWS):
        rows = np.arange(start, min(start + CHUNK_ROWS, len(enr)))
        rows = rows[st.active[enr.student[rows]]]
        n = len(rows)
        klass = enr.klass[rows]
        term = SPEC_TERM[c.spec[klass]]
        # a change dated before its class's semester starts still begins with the semester
        begin = np.where(enr.begins_on_change[rows] & (term != TERM_S2), 4, term)
        yield _table(HEADERS["enrollments"], [
            _ids("enr-s", rows + 1, ID_WIDTH["enr"]), _const("active", n), _stamps(enr.changed[rows]),
            _ids("cls-", klass + 1, ID_WIDTH["cls"]), _school_ids(c.school[klass]),
            _ids("stu-", enr.student[rows] + 1, ID_WIDTH["stu"]), _const("student", n), _const("false", n),
            _coded(term_begin, begin), _coded(term_end, term)])


def _demographics(d: District) -> pa.Table:
    st = d.students
    rows = np.flatnonzero(st.active)
    n = len(rows)
    race = st.race[rows].astype(np.int64)
    flags = [_coded(["false", "true"], (race >> bit) & 1) for bit in range(6)]
    abbreviation, _, cities, _ = STATES[d.state]
    return _table(HEADERS["demographics"], [
        _ids("stu-", rows + 1, ID_WIDTH["stu"]), _const("active", n), _stamps(st.changed[rows]),
        pc.cast(pa.array(st.birth[rows], pa.date32()), pa.string()),
        _coded(["male", "female"], st.female[rows].astype(np.int8)), *flags,
        _coded(["false", "true"], st.hispanic[rows].astype(np.int8)),
        _coded([c for c, _ in BIRTH_COUNTRIES], st.country[rows]),
        _optional([abbreviation, *OTHER_BIRTH_STATES], st.birth_state[rows]),
        _optional(list(cities), st.birth_city[rows]), _coded([r for r, _ in RESIDENCE], st.residence[rows])])


def _manifest() -> pa.Table:
    written = {"academicSessions", "classes", "courses", "demographics", "enrollments", "orgs", "users"}
    rows = [("manifest.version", "1.0"), ("oneroster.version", "1.1"),
            *((f"file.{f}", "bulk" if f in written else "absent") for f in MANIFEST_FILES),
            ("source.systemName", "Rosterdrop synthetic SIS"), ("source.systemCode", "rosterdrop-generate")]
    return pa.table({"propertyName": [r[0] for r in rows], "value": [r[1] for r in rows]})


# ---------------------------------------------------------------- writing the zip


def _write_csv(zf: zipfile.ZipFile, name: str, tables: Iterator[pa.Table] | list[pa.Table],
               lists: bool = False) -> int:
    """Stream tables into one zip entry; `lists`: they hold multi-valued cells written with placeholders."""
    entry = zipfile.ZipInfo(f"{name}.csv", date_time=ZIP_DATE)
    entry.compress_type = zipfile.ZIP_DEFLATED
    # ZipFile applies its compresslevel only to entries it names itself (3.13 renamed the attribute)
    setattr(entry, "compress_level" if hasattr(entry, "compress_level") else "_compresslevel", COMPRESS_LEVEL)
    entry.external_attr = 0o644 << 16
    rows = 0
    options = pacsv.WriteOptions(include_header=False, quoting_style="none")
    with zf.open(entry, "w") as out:
        header = None
        for table in tables:
            if header is None:
                header = ",".join(table.column_names)
                out.write((header + "\n").encode())
            for start in range(0, table.num_rows, CHUNK_ROWS):
                sink = pa.BufferOutputStream()
                # quoting "none" makes the writer fail loudly if a stray comma or quote ever gets in
                pacsv.write_csv(table.slice(start, CHUNK_ROWS), sink, options)
                data = sink.getvalue()
                if lists:
                    data = data.to_pybytes().translate(_UNPLACEHOLD)
                out.write(data)
            rows += table.num_rows
    return rows


def _write_bundle(d: District, path: Path, step: Callable[[str], None] = lambda _name: None) -> dict[str, int]:
    """Write the district as a zip, atomically: an inbox watcher never sees a half-written bundle.
    `step(file)` is called after each file (BUNDLE_STEPS in all), for a progress bar."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    rows: dict[str, int] = {}
    try:
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as zf:
            _write_csv(zf, "manifest", [_manifest()])
            step("manifest")
            rows["orgs"] = _write_csv(zf, "orgs", [_orgs(d)])
            step("orgs")
            rows["academicSessions"] = _write_csv(zf, "academicSessions", [_sessions()])
            step("academicSessions")
            rows["courses"] = _write_csv(zf, "courses", [_courses(d)], lists=True)
            step("courses")
            staff = _staff_users(d)
            surnames = staff.column("familyName").combine_chunks()
            rows["classes"] = _write_csv(zf, "classes", [_classes(d, surnames)], lists=True)
            step("classes")
            rows["users"] = _write_csv(zf, "users", _users(d, staff), lists=True)
            step("users")
            del staff
            rows["enrollments"] = _write_csv(zf, "enrollments", _enrollment_chunks(d))
            step("enrollments")
            rows["demographics"] = _write_csv(zf, "demographics", [_demographics(d)])
            step("demographics")
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, path)
    return rows


def _users(d: District, staff: pa.Table) -> Iterator[pa.Table]:
    # one population's columns at a time keeps peak memory to the largest of them
    yield staff
    yield _student_users(d)
    yield _guardian_users(d)


def generate_bundles(out: Path, schools: int = 5, students: int = 2000, seed: int = 1,
                     nightly: Path | None = None, changes: float | None = None,
                     step: Callable[[str], None] = lambda _name: None) -> dict:
    """Write a synthetic OneRoster 1.1 bulk bundle of one district to `out`; with `nightly`, also the same
    district a day later with `changes` percent of its students touched. Returns what was written.
    `step(name)` is called after each piece of work (generate_steps(nightly) in all), for a progress bar;
    from two threads while the bundles are written."""
    if schools < 1 or students < 1:
        raise UserError("--schools and --students must be at least 1")
    if seed < 0:
        raise UserError(f"--seed must be 0 or more (got {seed})")
    if (nightly is None) != (changes is None):
        raise UserError("--nightly and --changes go together: --nightly PATH --changes PCT")
    if changes is not None and not 0 <= changes <= 100:
        raise UserError(f"--changes is a percentage of students, 0 to 100 (got {changes})")
    if nightly is not None and Path(nightly).resolve() == Path(out).resolve():
        raise UserError("--nightly must name another file than --out")
    started = time.perf_counter()
    district = _build_district(seed, schools, students)
    step("district")
    summary: dict = {"out": str(out), "district": district.name, "seed": seed, "schools": schools,
                     "students": students}
    # the two bundles are written side by side: compression and CSV writing release the GIL
    with ThreadPoolExecutor(max_workers=2) as pool:
        base_rows = pool.submit(_write_bundle, district, Path(out), step)
        if nightly is not None:
            later, counts = _nightly(district, seed, float(changes))
            step("nightly")
            nightly_rows = pool.submit(_write_bundle, later, Path(nightly), step)
        summary.update({"rows": base_rows.result(), "zip_bytes": Path(out).stat().st_size})
        if nightly is not None:
            summary.update({"nightly": str(nightly), "changes_percent": changes, "changes": counts,
                            "nightly_rows": nightly_rows.result(),
                            "nightly_zip_bytes": Path(nightly).stat().st_size})
    summary["seconds"] = round(time.perf_counter() - started, 2)
    return summary


BUNDLE_STEPS = 8  # the files _write_bundle writes


def generate_steps(nightly: bool) -> int:
    """How many times generate_bundles calls `step`."""
    return 1 + BUNDLE_STEPS + ((1 + BUNDLE_STEPS) if nightly else 0)
