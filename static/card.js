// Pay by card: Stripe.js turns the card into a payment method in the browser (the number never
// reaches the panel), then the form is posted with its id; the panel confirms the payment
// with Stripe. Real Stripe.js gives a PaymentMethod (`createPaymentMethod`); a Stripe.js
// without it (localstripe's mock, in the tests) gives a token whose card is used instead.
(function () {
  var form = document.getElementById('card-form');
  if (!form) return;
  var error = document.getElementById('card-error');
  var button = document.getElementById('pay-card');
  function show(message) {
    error.textContent = message;
    error.hidden = false;
    form.dataset.state = 'refused';
    button.disabled = false;
  }
  if (typeof Stripe === 'undefined') {
    show('Card payments cannot load right now (Stripe.js did not load). Try again later, or use another way to pay.');
    button.disabled = true;
    return;
  }
  var stripe = Stripe(form.dataset.stripeKey);
  var card = stripe.elements().create('card');
  card.mount('#card-element');
  // Where the form is, for the tests (and anyone debugging): ready, reading, sending.
  form.dataset.state = 'ready';
  form.addEventListener('submit', async function (ev) {
    ev.preventDefault();
    if (button.disabled) return;
    button.disabled = true;
    error.hidden = true;
    form.dataset.state = 'reading';
    var id = null, err = null;
    try {
      var r = stripe.createPaymentMethod ? await stripe.createPaymentMethod({ type: 'card', card: card }) : null;
      if (r && r.paymentMethod) id = r.paymentMethod.id;
      else if (r && r.error) err = r.error;
      if (!id && !err) {
        var t = await stripe.createToken(card);
        if (t && t.token && t.token.card) id = t.token.card.id;
        else err = t && t.error;
      }
    } catch (e) {
      err = e;
    }
    if (!id) {
      show((err && err.message) || 'The card could not be read: check the number, expiry and CVC.');
      return;
    }
    form.elements['payment_method'].value = id;
    form.dataset.state = 'sending';
    form.submit();
  });
})();
