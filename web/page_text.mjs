// The HTML's own texts (the loading overlay, the no-JavaScript notice: elements with data-i18n)
// in the page's language, from the same catalogues as the app's (i18n/<code>.json, this origin).
// At load the browser's preferred language decides, as in the app (web/i18n.cpp); the app's
// language switch announces changes with a "loupe-language" event on the document.

const languages = ['en', 'id'];

// The first of the browser's languages Loupe has ("in" is Indonesian's pre-1989 code), else English.
export function pickLanguage(preferred) {
  for (const tag of preferred) {
    const primary = String(tag).toLowerCase().split(/[-_;]/)[0].trim();
    if (primary === 'in') return 'id';
    if (languages.includes(primary)) return primary;
  }
  return 'en';
}

async function translate(language) {
  document.documentElement.lang = language;
  let catalogue;
  try {
    catalogue = await (await fetch(`i18n/${language}.json`)).json();
  } catch (error) {
    console.warn(`Loupe: no ${language} catalogue for the page's texts (${error.message})`);
    return;
  }
  for (const element of document.querySelectorAll('[data-i18n]')) {
    const entry = catalogue[element.dataset.i18n];
    const text = typeof entry === 'string' ? entry : entry?.text;
    if (text) element.textContent = text;
  }
}

document.addEventListener('loupe-language', (event) => translate(event.detail));
const initial = pickLanguage(navigator.languages?.length ? navigator.languages : [navigator.language ?? 'en']);
if (initial !== 'en') translate(initial);
