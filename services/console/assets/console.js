// The console's only script, loaded as a module (no inline script: the CSP forbids it).
// Pages work without it; with it, GOV.UK and MOJ components get their enhancements.
import { initAll as initGovuk } from '/console/static/govuk-frontend.min.js'
import { initAll as initMoj } from '/console/static/moj-frontend.min.js'

document.body.classList.add('js-enabled', 'govuk-frontend-supported')
initGovuk()
initMoj()
