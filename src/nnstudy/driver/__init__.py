"""The driver: what conducts a study.

It brings the store's runs in line with the study file (`run_life`), plans the
jobs by cost (`plan`, `cost`), hands them to an executor, records what comes
back (`recorder`, `clock`), and repeats look by look when a study runs until
decided (`until_decided`). Executors and the pipeline packages below never
import it.
"""
