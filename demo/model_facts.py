"""The demo projects' model facts (what the CHAI card and HTI-1 need), as their project lead
would type them: the deployed sepsis summariser has most of them, with a few required ones
still blank so that the exports show what is missing; the ED triage assistant, still in
development, has only a few. The health system, its addresses and its people are fictional.
"""

from governance.models import Project, User
from lifecycle.projects import services as project_services

DEVELOPER = "Lakeside Health Clinical AI Lab (fictional demo health system)"
CONTACT = "clinical-ai-lab@lakeside-health.example"

MODEL_FACTS: dict[str, dict[str, str]] = {
    "sepsis-risk-summariser": {
        "developer": DEVELOPER,
        "developer_contact": CONTACT,
        "release_stage": "Limited release: inpatient wards",
        "release_date": "2025-09-15",
        "global_availability": "Lakeside Health inpatient wards only",
        "ehr_compatibility": "Epic (through the hospital's FHIR R4 interface)",
        "regulatory_approval": "Not FDA cleared: clinical decision support whose every output "
        "a clinician reviews; no autonomous action.",
        "keywords": "sepsis\nearly warning\nsummarisation",
        "output_description": "For each admission, a sepsis risk class (elevated or not) with a "
        "short summary of the notes and vital signs that support it.",
        "output_type": "Classification, with a supporting summary",
        "decision_role": "Informs: the rapid response nurse reviews the patient and decides. "
        "The output never triggers treatment or orders by itself.",
        "how_to_use": "Flags and summaries appear on the rapid response worklist. The nurse "
        "reads the cited findings, examines the patient and follows the sepsis pathway; a "
        "disagreement is recorded with one click.",
        "target_population": "Adults (18 and over) admitted to general medical and surgical wards.",
        "out_of_scope_uses": "Emergency department, intensive care, paediatric and obstetric "
        "patients; choosing or stopping antibiotics; patients receiving end-of-life care.",
        "known_risks": "Misses sepsis with few documented findings; a summary can leave out "
        "results not yet charted; lowering the threshold causes alert fatigue.",
        "known_biases": "The 2026 periodic review found women flagged more often than men at "
        "equal risk (demographic parity difference above the committee's 0.10 bound); the "
        "review is open.",
        "model_type": "Fine-tuned LLM (LoRA adapter on Meditron 70B)",
        "foundation_models": "Meditron 70B",
        "input_data_source": "Nursing and physician notes and charted vital signs from the "
        "hospital EHR, read at admission and every 4 hours.",
        "data_types": "In: free-text clinical notes and vital-sign series. Out: a risk class "
        "and a text summary.",
        "development_data": "120,000 de-identified adult admissions (2019-2023) from two "
        "Lakeside hospitals; 1,500 more held out for validation.",
        "training_criteria": "Included: adult inpatient admissions with at least one nursing "
        "note. Excluded: intensive care stays, stays under 12 hours, patients who opted out "
        "of secondary use.",
        "demographic_features": "None of race, ethnicity, language, sexual orientation, gender "
        "identity, sex or date of birth is an input feature; age may appear in note text.",
        "demographic_representativeness": "Training admissions match the hospitals' inpatient "
        "mix by sex, age band and preferred language (table in the Data phase's data "
        "diversity evidence).",
        "training_relevance": "The same hospitals, wards and note templates as the deployment.",
        "fairness_approach": "Demographic parity and equalised odds by sex and age band are gate "
        "criteria, checked at validation and at every periodic review.",
        "bias_mitigation": "Notes de-identified before training; thresholds reviewed per "
        "subgroup; every summary cites its evidence so that unsupported flags stand out.",
        "external_validation_source": "Retrospective validation at the Harbor campus community "
        "hospital (2024 admissions), not used in development.",
        "external_validation_process": "1,500 admissions labelled against Sepsis-3 by two rapid "
        "response nurses; AUROC and subgroup gaps compared with the development results.",
        "validity_monitoring": "Monthly AUROC and calibration on 1,500 labelled admissions; a "
        "committee periodic review every quarter.",
        "fairness_monitoring": "Subgroup gaps by sex and age band in the same monthly sample; a "
        "gap above 0.10 opens a periodic review.",
        "update_schedule": "Retrained at most once a year, through every gate again; thresholds "
        "change only with the committee's approval.",
        "correction_frequency": "A failed criterion is acted on within 30 days: new threshold, "
        "retraining or withdrawal.",
        "security": "Runs in the hospital's private cloud tenancy; no data leaves it; every "
        "access is logged.",
        "funding_source": "Lakeside Health quality and safety operating budget; no external "
        "funding.",
        "stakeholders_consulted": "Rapid response nurses, hospitalists, the sepsis committee and "
        "the patient and family advisory council.",
        # Still blank, so the exports list them as missing: who ran the external validation,
        # how representative its data was, outcome evaluations, publications, patient consent.
    },
    "ed-triage-assistant": {
        "developer": DEVELOPER,
        "developer_contact": CONTACT,
        "release_stage": "In development: not released",
        "model_type": "Retrieval-augmented generation over a hosted GPT-4o (under a BAA)",
        "output_type": "Recommendation: a suggested ESI level with its reasons",
        "decision_role": "Augments: it suggests a level and flags possible under-triage; the "
        "triage nurse decides.",
        "target_population": "Adults and children presenting to the emergency department.",
    },
}


def record_model_facts(project: Project, lead: User) -> None:
    """Give the demo project its facts through the service, so the audit trail has them."""
    facts = MODEL_FACTS.get(project.slug)
    if facts:
        project_services.model_facts_update(
            actor=lead,
            project=project,
            changes=facts,
            reason="Filled in for the CHAI model card and the HTI-1 source attributes.",
        )
