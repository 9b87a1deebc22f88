"""The model facts: what the CHAI Applied Model Card and the HTI-1 source attributes ask for
that the product does not otherwise hold (docs/reports.md).

One declaration drives the form, the API, the exports and the list of missing facts. `used_by`
names the CHAI card elements (`chai:`) and HTI-1 attributes (`hti1:`, the element ids of
`standards/hti1/`) each fact fills, so an export can say exactly which of its fields are
missing. Facts the product already holds (name, intended use, intended users, clinical
setting, versions, evaluation results) are not repeated here.
"""

from dataclasses import dataclass

MAX_FACT_LENGTH = 20_000


@dataclass(frozen=True)
class Fact:
    key: str
    label: str
    help: str
    used_by: tuple[str, ...]
    section: str
    # A short one-line fact (a name, a date) rather than paragraphs.
    short: bool = False
    # Neither export requires it: CHAI marks its element optional, and HTI-1 does not ask for
    # it or lets its attribute be shown as "not available". Never listed as missing.
    optional: bool = False


DEVELOPER = "Developer and release"
USE = "Uses and directions"
WARNINGS = "Warnings"
DATA = "Development data and inputs"
FAIRNESS = "Fairness"
EXTERNAL = "External validation"
MAINTENANCE = "Maintenance and updates"
TRANSPARENCY = "Transparency and resources"

FACTS: tuple[Fact, ...] = (
    Fact(
        "developer",
        "Developer",
        "Who developed the intervention (organisation or team).",
        ("chai:BasicInfo/ModelDeveloper", "hti1:HTI:B1.i"),
        DEVELOPER,
        short=True,
    ),
    Fact(
        "developer_contact",
        "Developer contact",
        "An address, e-mail or web page to reach the developer.",
        ("chai:BasicInfo/DeveloperContact", "hti1:HTI:B1.i"),
        DEVELOPER,
        short=True,
    ),
    Fact(
        "release_stage",
        "Release stage",
        "For example: pilot, limited release, general availability, FDA cleared.",
        ("chai:ReleaseInfo/ReleaseStage",),
        DEVELOPER,
        short=True,
    ),
    Fact(
        "release_date",
        "Release date",
        "When this release was or will be made available.",
        ("chai:ReleaseInfo/ReleaseDate",),
        DEVELOPER,
        short=True,
    ),
    Fact(
        "global_availability",
        "Availability",
        "Where the intervention is available.",
        ("chai:ReleaseInfo/GlobalAvailability",),
        DEVELOPER,
        short=True,
    ),
    Fact(
        "ehr_compatibility",
        "EHR compatibility",
        "One EHR system per line.",
        ("chai:ReleaseInfo/EHRCompatibility",),
        DEVELOPER,
        optional=True,
    ),
    Fact(
        "regulatory_approval",
        "Regulatory approval",
        "Clearances, approvals or their absence.",
        ("chai:ReleaseInfo/RegulatoryApproval",),
        DEVELOPER,
        optional=True,
    ),
    Fact(
        "keywords",
        "Keywords",
        "One keyword per line.",
        ("chai:ModelSummary/Keywords",),
        DEVELOPER,
        optional=True,
    ),
    Fact(
        "output_description",
        "Output",
        "The value the intervention produces as its output.",
        ("chai:TrustIngredients/AISystemFacts/OutcomesAndOutputs", "hti1:HTI:B1.iii"),
        USE,
    ),
    Fact(
        "output_type",
        "Type of output",
        "Prediction, classification, recommendation, evaluation, analysis or other (say which).",
        ("hti1:HTI:B1.iv",),
        USE,
        short=True,
    ),
    Fact(
        "decision_role",
        "Decision-making role",
        "Whether the output informs, augments or replaces clinical management.",
        ("hti1:HTI:B2.iv",),
        USE,
    ),
    Fact(
        "how_to_use",
        "How to use",
        "How a user works with the output in the workflow.",
        ("chai:UsesAndDirections/HowToUse",),
        USE,
    ),
    Fact(
        "target_population",
        "Intended patient population",
        "The patients the intervention is meant for.",
        ("chai:UsesAndDirections/TargetedPatientPopulation", "hti1:HTI:B2.ii"),
        USE,
    ),
    Fact(
        "out_of_scope_uses",
        "Cautioned out-of-scope uses",
        "Tasks, situations or populations where users are cautioned against applying it.",
        ("chai:UsesAndDirections/CautionedOutOfScopeSettings", "hti1:HTI:B3.i"),
        USE,
    ),
    Fact(
        "known_risks",
        "Known risks and limitations",
        "Known risks, inappropriate settings or uses, known limitations.",
        ("chai:Warnings/KnownRisksAndLimitations", "hti1:HTI:B3.ii"),
        WARNINGS,
    ),
    Fact(
        "known_biases",
        "Known biases and ethical considerations",
        "Biases found or suspected, and ethical considerations.",
        ("chai:Warnings/KnownBiasesOrEthicalConsiderations",),
        WARNINGS,
    ),
    Fact(
        "model_type",
        "Model type",
        "For example: a fine-tuned LLM, retrieval-augmented "
        "generation over a hosted model, gradient-boosted trees.",
        ("chai:TrustIngredients/AISystemFacts/ModelType",),
        DATA,
        short=True,
    ),
    Fact(
        "foundation_models",
        "Foundation models",
        "The foundation models used, with versions.",
        ("chai:TrustIngredients/AISystemFacts/FoundationModels",),
        DATA,
        optional=True,
    ),
    Fact(
        "input_data_source",
        "Input data source",
        "Where the input data comes from.",
        ("chai:TrustIngredients/AISystemFacts/InputDataSource",),
        DATA,
    ),
    Fact(
        "data_types",
        "Input and output data types",
        "The data types going in and coming out.",
        ("chai:TrustIngredients/AISystemFacts/OutputAndInputDataTypes",),
        DATA,
    ),
    Fact(
        "development_data",
        "Development data",
        "How the development data is characterised (sources, period, size).",
        ("chai:TrustIngredients/AISystemFacts/DevelopmentDataCharacterization",),
        DATA,
    ),
    Fact(
        "training_criteria",
        "Training data inclusion and exclusion",
        "The inclusion and exclusion criteria that shaped the training data.",
        ("hti1:HTI:B4.i",),
        DATA,
    ),
    Fact(
        "demographic_features",
        "Demographic input features",
        "Which of race, ethnicity, "
        "language, sexual orientation, gender identity, sex, date of birth, social "
        "determinants of health and health status assessments are input features.",
        ("hti1:HTI:B4.ii",),
        DATA,
    ),
    Fact(
        "demographic_representativeness",
        "Demographic representativeness",
        "How the training data represents those groups.",
        ("hti1:HTI:B4.iii",),
        DATA,
    ),
    Fact(
        "training_relevance",
        "Relevance of training data",
        "How the training data relates to the setting it is deployed in.",
        ("hti1:HTI:B4.iv",),
        DATA,
    ),
    Fact(
        "fairness_approach",
        "Approach to fair output",
        "How the developer ensures the output is fair.",
        ("hti1:HTI:B5.i",),
        FAIRNESS,
    ),
    Fact(
        "bias_mitigation",
        "Bias mitigation",
        "Approaches to manage, reduce or eliminate bias.",
        ("chai:TrustIngredients/AISystemFacts/BiasMitigationApproaches", "hti1:HTI:B5.ii"),
        FAIRNESS,
    ),
    Fact(
        "external_validation_source",
        "External validation data",
        "The data source, clinical setting or environment of an external validation.",
        ("hti1:HTI:B6.i",),
        EXTERNAL,
        optional=True,
    ),
    Fact(
        "external_validation_party",
        "External validation party",
        "Who conducted the external testing.",
        ("hti1:HTI:B6.ii",),
        EXTERNAL,
        short=True,
        optional=True,
    ),
    Fact(
        "external_representativeness",
        "Representativeness of external data",
        "How the external data represents the demographic groups.",
        ("hti1:HTI:B6.iii",),
        EXTERNAL,
        optional=True,
    ),
    Fact(
        "external_validation_process",
        "External validation process",
        "How the external validation was done.",
        ("hti1:HTI:B6.iv",),
        EXTERNAL,
        optional=True,
    ),
    Fact(
        "outcome_evaluations",
        "Outcome evaluations",
        "Citations or links to evaluations of "
        "the effect on morbidity, mortality, length of stay or other outcomes.",
        ("hti1:HTI:B7.v", "chai:Resources/EvaluationReferences"),
        EXTERNAL,
        optional=True,
    ),
    Fact(
        "validity_monitoring",
        "Validity monitoring",
        "The process and frequency by which validity is monitored over time.",
        ("chai:TrustIngredients/AISystemFacts/OngoingMaintenance", "hti1:HTI:B8.i"),
        MAINTENANCE,
    ),
    Fact(
        "fairness_monitoring",
        "Fairness monitoring",
        "The process and frequency by which fairness is monitored over time.",
        ("hti1:HTI:B8.iii",),
        MAINTENANCE,
    ),
    Fact(
        "update_schedule",
        "Update process and schedule",
        "The process and frequency by which the intervention is updated.",
        ("hti1:HTI:B9.i",),
        MAINTENANCE,
        optional=True,
    ),
    Fact(
        "correction_frequency",
        "Correction when risks are found",
        "How often performance is corrected when validity or fairness risks are identified.",
        ("hti1:HTI:B9.ii",),
        MAINTENANCE,
        optional=True,
    ),
    Fact(
        "security",
        "Security",
        "Security and privacy measures.",
        ("chai:TrustIngredients/AISystemFacts/Security",),
        MAINTENANCE,
        optional=True,
    ),
    Fact(
        "transparency",
        "Transparency",
        "How the intervention is made intelligible to its users.",
        ("chai:TrustIngredients/AISystemFacts/Transparency",),
        TRANSPARENCY,
        optional=True,
    ),
    Fact(
        "funding_source",
        "Funding source",
        "Who funded the technical implementation.",
        ("chai:TrustIngredients/TransparencyInformation/FundingSource", "hti1:HTI:B1.ii"),
        TRANSPARENCY,
    ),
    Fact(
        "third_party_information",
        "Third parties",
        "Third parties involved and what they provided.",
        ("chai:TrustIngredients/TransparencyInformation/ThirdPartyInformation",),
        TRANSPARENCY,
        optional=True,
    ),
    Fact(
        "stakeholders_consulted",
        "Stakeholders consulted",
        "Who was consulted (clinicians, patients, administrators...).",
        ("chai:TrustIngredients/TransparencyInformation/StakeholdersConsulted",),
        TRANSPARENCY,
    ),
    Fact(
        "publications",
        "Peer-reviewed publications",
        "Publications about the intervention, or “None”.",
        ("chai:Resources/PeerReviewedPublications",),
        TRANSPARENCY,
    ),
    Fact(
        "clinical_trial",
        "Clinical trial",
        "A registered trial, if any.",
        ("chai:Resources/ClinicalTrial",),
        TRANSPARENCY,
        optional=True,
    ),
    Fact(
        "reimbursement_status",
        "Reimbursement status",
        "Reimbursement codes or status.",
        ("chai:Resources/ReimbursementStatus",),
        TRANSPARENCY,
        optional=True,
    ),
    Fact(
        "patient_consent",
        "Patient consent or disclosure",
        "Whether and how patients are told or asked.",
        ("chai:Resources/PatientConsentOrDisclosure",),
        TRANSPARENCY,
    ),
    Fact(
        "bibliography",
        "Bibliography",
        "References in BibTeX.",
        ("chai:Bibliography",),
        TRANSPARENCY,
        optional=True,
    ),
)

FACTS_BY_KEY = {fact.key: fact for fact in FACTS}


def missing_facts(facts: dict[str, str], scope: str | None = None) -> list[Fact]:
    """The required facts without a value, in declaration order; `scope` ("chai" or "hti1")
    keeps only those that export uses."""
    return [
        fact
        for fact in FACTS
        if not fact.optional
        and not (facts.get(fact.key) or "").strip()
        and (scope is None or any(use.startswith(scope + ":") for use in fact.used_by))
    ]
