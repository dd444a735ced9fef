// Tailwind v4 reads this through `@config` in static/src/app.css. Content paths: the templ
// sources (class names are written there; the generated Go files repeat them).
/** @type {import('tailwindcss').Config} */
module.exports = {
  content: ["./views/**/*.templ", "./app/web/**/*.go"],
  theme: {
    extend: {
      fontFamily: {
        sans: ["Inter", "ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif"],
        mono: ["JetBrains Mono", "ui-monospace", "SFMono-Regular", "Menlo", "monospace"],
      },
    },
  },
};
